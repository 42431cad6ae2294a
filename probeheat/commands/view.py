"""`probeheat view`: the terminal viewer for grids and the bundles under a folder."""

from __future__ import annotations

import argparse

HELP = "browse bundles and look at grids as heatmaps in the terminal"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="grid bundles (several open as tabs), a run bundle, or a folder "
                             "to browse (default: artifacts/)")
    parser.add_argument("--metric", default=None,
                        help="metric to colour by (default: auc, else the grid's first)")
    parser.add_argument("--vmin", type=float, default=0.5, help="colour range start (0.5)")
    parser.add_argument("--vmax", type=float, default=1.0, help="colour range end (1.0)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from probeheat.errors import UserError

    if args.vmin >= args.vmax:
        raise UserError("--vmin", f"{args.vmin} is not below --vmax {args.vmax}",
                        "pass a range such as --vmin 0.5 --vmax 1.0")
    from probeheat.tui.app import run_viewer

    return run_viewer([Path(p) for p in args.paths], metric=args.metric,
                      vmin=args.vmin, vmax=args.vmax)
