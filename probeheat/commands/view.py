"""`probeheat view`: the terminal viewer for grids and the bundles under a folder."""

from __future__ import annotations

import argparse

HELP = "browse bundles and look at grids as heatmaps in the terminal"
BUNDLE_FILES = ("run.json", "grid.json", "generalization.json", "shards")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from probeheat.tui.keys import epilog  # the viewer's key table: standard library only

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = epilog()
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="grid bundles (several open as tabs), a run bundle or a run "
                             "still being written (NAME.partial), or a folder to browse "
                             "(default: artifacts/)")
    parser.add_argument("--metric", default=None,
                        help="metric to colour by (default: auc, else the grid's first)")
    parser.add_argument("--vmin", type=float, default=0.5,
                        help="colour range start (default: %(default)s)")
    parser.add_argument("--vmax", type=float, default=1.0,
                        help="colour range end (default: %(default)s)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip the checksum of each file before it is read")


def check_paths(paths) -> list:
    """Refuse, in one line and before the full-screen app starts, paths it cannot open;
    return the bundles opened (folders to browse are not)."""
    from pathlib import Path

    from probeheat.bundle import open_bundle
    from probeheat.bundle.manifest import DAMAGED_FIX
    from probeheat.errors import UserError

    partials = [p for p in paths if Path(p).is_dir() and Path(p).name.endswith(".partial")]
    if partials and len(paths) > 1:
        raise UserError(str(partials[0]), "is a run still being written",
                        "open it on its own: probeheat view NAME.partial")
    if partials:
        return []  # the run page shows what it holds so far
    folders = [p for p in paths if Path(p).is_dir() and not (Path(p) / "manifest.json").exists()]
    for folder in folders:  # a bundle that lost its manifest is damage, not a folder to browse
        if any((Path(folder) / name).exists() for name in BUNDLE_FILES):
            raise UserError(str(folder), "looks like a bundle but has no manifest.json",
                            DAMAGED_FIX)
    if folders and len(paths) > 1:
        raise UserError(str(folders[0]), "is a folder of bundles, not a bundle",
                        "pass one folder to browse, or bundle folders to open")
    bundles = []
    for path in paths:
        if not Path(path).exists():
            raise UserError(str(path), "no such file or folder", "check the path")
        if path not in folders:
            bundles.append(open_bundle(path))  # a damaged manifest: one line here
    return bundles


def check_metric(metric: str | None, bundles) -> None:
    """--metric must be a metric of at least one grid given (one that only some have is
    shown where it exists, with a note on the others)."""
    from probeheat.errors import UserError

    grids = [b for b in bundles if b.kind == "grid"]
    if metric is None or not grids:
        return
    try:
        known = sorted({m for g in grids for m in g.metrics})
    except UserError:
        return  # a damaged grid: the viewer shows why
    if metric not in known:
        raise UserError("--metric", f"no grid given has the metric {metric!r}",
                        f"use one of {', '.join(known)}")


def run(args: argparse.Namespace) -> int:
    import gc
    import math
    from pathlib import Path

    from probeheat.errors import UserError

    if not (math.isfinite(args.vmin) and math.isfinite(args.vmax)) or args.vmin >= args.vmax:
        raise UserError("--vmin", f"{args.vmin} is not below --vmax {args.vmax}",
                        "pass a range such as --vmin 0.5 --vmax 1.0")
    paths = [Path(p) for p in args.paths]
    # Start-up creates ~100k objects (numpy, Textual, the viewer's modules) that live as
    # long as the app; collecting them again and again was about a tenth of the time to
    # the first frame. The collector pauses while they are made and then freezes them
    # (keeps them out of later collections); it runs as usual for what the app allocates.
    # A refused path freezes nothing, and a collector the caller had disabled stays so.
    collecting = gc.isenabled()
    gc.disable()
    try:
        opened = check_paths(paths)
        check_metric(args.metric, opened)
        from probeheat.tui.app import run_viewer

        gc.freeze()
    finally:
        if collecting:
            gc.enable()
    return run_viewer(paths, opened=opened, metric=args.metric, vmin=args.vmin, vmax=args.vmax)
