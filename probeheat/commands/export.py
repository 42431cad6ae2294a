"""`probeheat export`: publication figures (PNG, PDF, SVG) of grid and generalization bundles,
or their tidy table (CSV, JSON, Parquet; see probeheat/api.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError

HELP = ("write a publication figure (.png/.pdf/.svg) of grid, generalization or steer "
        "bundles, or the tidy table (.csv/.json/.parquet) of a grid or generalization bundle")

EPILOG = """\
examples:
  probeheat export runs/grid -o fig.pdf
  probeheat export runs/grid -o fig.png --highlight 4:28,first_answer:-1 --mark-best
  probeheat export runs/grid -o fig.svg --positions last_q,exact_answer_first:-1
  probeheat export runs/grid_a --diff runs/grid_b -o diff.pdf
  probeheat export m1_tqa m1_hqa m2_tqa m2_hqa -o all.pdf --panels 2x2 --panel-titles A,B,C,D
  probeheat export runs/generalization -o gen.pdf
  probeheat export runs/head-grid -o heads.png --position exact_answer_last
  probeheat export runs/grid -o ece.pdf --metric ece
  probeheat export runs/grid -o grid.csv      (also .json, .parquet: one row per cell and metric)

Ranges are inclusive and follow the grid's column order: --layers 0:16 is layers 0..16,
first_answer:-1 runs from first_answer to the last column named -1. Existing files are
replaced; a failed export leaves the old file (or nothing) in place.

A table has the columns layer, position, metric, value, lo, hi, n, spread, reason (empty or
null where not applicable); .parquet needs pyarrow."""

TABLES = (".csv", ".json", ".parquet")
FIGURE_ONLY = ("metric", "position", "positions", "layers", "width", "height", "vmin", "vmax", "annotate",
               "baselines", "mark_best", "highlight", "title", "xlabel", "ylabel", "diff",
               "panels", "panel_titles")
GRID_ONLY = ("position", "positions", "layers", "highlight", "diff", "mark_best", "panels", "panel_titles",
             "metric", "annotate", "baselines")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("bundles", nargs="+", metavar="BUNDLE",
                        help="grid bundle(s) from `probeheat probe`, or one generalization or steer "
                             "bundle")
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="FILE",
                        help="output file; the extension picks the format: a figure (.png, .pdf, .svg) or "
                             "the tidy table (.csv, .json, .parquet)")
    look = parser.add_argument_group("look")
    look.add_argument("--metric", default=None,
                      help="grid metric to plot: auc, accuracy, gain_layer0, gain_baseline, "
                           "ece, recall_at_fpr1, recall_at_fpr5 (those the grid has; default: "
                           "auc)")
    look.add_argument("--positions", help="columns to show, in this order: comma list, "
                      "ranges like first_answer:-1 allowed (default: all, grid order); for a "
                      "head grid, the positions to draw, one panel each")
    look.add_argument("--position", metavar="P",
                      help="head grids: draw only this position's layer x head panel")
    look.add_argument("--layers",
                      help="rows to show: 0:16 (inclusive), 8:, or 0,4,8 (default: all)")
    look.add_argument("--width", default=None, help="single (3.25 in), double (6.75 in) or inches "
                      "(default: single; double for several grids)")
    look.add_argument("--height", type=float, default=None, metavar="INCHES",
                      help="override the height derived from the grid's shape")
    look.add_argument("--vmin", type=float, default=None, help="colour scale minimum (default 0.5)")
    look.add_argument("--vmax", type=float, default=None, help="colour scale maximum (default 1.0)")
    look.add_argument("--annotate", action="store_true",
                      help="print each cell's value in it (with its spread over seeds when "
                           "the grid has several); the type is sized to fit the cells")
    look.add_argument("--baselines", action="store_true",
                      help="add a strip of the grid's best baselines beside the heatmap, on the "
                           "same colour scale")
    look.add_argument("--mark-best", action="store_true", help="outline the highest cell")
    look.add_argument("--highlight", action="append", default=[], metavar="LAYERS,POSITIONS",
                      help="draw a box, e.g. 4:28,first_answer:-1 (repeatable)")
    look.add_argument("--title", default=None, help="figure title")
    look.add_argument("--xlabel", default=None,
                      help='x-axis title (default "Token"; "Head" for head grids)')
    look.add_argument("--ylabel", default=None, help='y-axis title (default "Layer")')
    look.add_argument("--dpi", type=int, default=200, help="PNG resolution (default 200)")
    more = parser.add_argument_group("comparisons")
    more.add_argument("--diff", type=Path, metavar="OTHER_GRID",
                      help="plot GRID - OTHER_GRID on their shared layers and positions")
    more.add_argument("--panels", metavar="ROWSxCOLS",
                      help="arrange several grids, e.g. 2x3 (default: one row)")
    more.add_argument("--panel-titles", metavar="A,B,...", help="one title per grid")
    from .probe import add_verify_option

    add_verify_option(parser)


def run(args: argparse.Namespace) -> int:
    from ..bundle import open_bundle, open_grid
    from ..bundle.base import check_not_inside
    from ..figures import output_format
    from ..selection import check_syntax

    if _is_table(args.output):
        return _export_table(args)
    output_format(args.output)  # refuse a bad path before reading any bundle
    check_syntax(args.layers, "--layers", layers=True)
    check_syntax(args.positions, "--positions", layers=False)
    check_not_inside(args.output, [Path(p) for p in args.bundles]
                     + ([Path(args.diff)] if args.diff else []), where="-o")
    look = _options(args, "Token", "Layer", "single")  # every look option, before any bundle
    look.size(), look.checked_dpi(), look.check_texts()
    if args.vmin is not None and args.vmax is not None:
        look.color_range()
    bundles = [open_bundle(p) for p in args.bundles]
    kinds = {b.kind for b in bundles}
    if kinds == {"generalization"}:
        out = _export_generalization(bundles, args)
    elif kinds == {"grid"}:
        diff = open_grid(args.diff) if args.diff else None
        if diff is not None:
            import sys

            from ..probe.compare import other_models

            note = other_models(bundles[0], diff)
            if note:
                print(f"note: {note}", file=sys.stderr)
        out = _export_grids(bundles, diff, args)
    elif kinds == {"steer"}:
        out = _export_steer(bundles, args)
    else:
        odd = next(b for b in bundles if b.kind != "grid")
        raise UserError(str(odd.path), f"is a {odd.kind} bundle",
                        "export takes grid bundles (from `probeheat probe`), one "
                        "generalization bundle or one steer bundle")
    print(out)
    return 0


def _is_table(out: Path) -> bool:
    """A table extension; a figure one (or a folder: the figure check says what is wrong);
    anything else is refused naming both kinds."""
    from ..figures.options import FORMATS

    suffix = Path(out).suffix.lower()
    if suffix in TABLES:
        return True
    if suffix in FORMATS or Path(out).is_dir():
        return False
    raise UserError("-o", f"unsupported extension {suffix or '(none)'!r} in {out}",
                    "name the file .png, .pdf or .svg for a figure, or .csv, .json or "
                    ".parquet for a table")


def _export_table(args: argparse.Namespace) -> int:
    """The tidy table of one grid (or generalization) bundle, written like a figure: through
    a temporary file and a rename."""
    from ..api import open as open_view
    from ..api import table_format, write_table
    from ..bundle import open_bundle
    from ..bundle.base import check_not_inside

    table_format(args.output)  # a bad folder, or parquet without pyarrow: before any reading
    used = [f"--{n.replace('_', '-')}" for n in FIGURE_ONLY
            if getattr(args, n) not in (None, False, [])] + (["--dpi"] if args.dpi != 200 else [])
    if used:
        raise UserError(used[0], "applies to figures, not to a table",
                        "leave it out: the table holds every cell and metric")
    if len(args.bundles) > 1:
        raise UserError(str(args.bundles[1]), "a table holds one bundle",
                        "export the bundles one at a time")
    check_not_inside(args.output, [Path(args.bundles[0])], where="-o")
    bundle = open_bundle(args.bundles[0])  # opened once; the view wraps it
    if bundle.kind == "steer":
        raise UserError(str(bundle.path), "is a steer bundle: it exports as a figure, "
                        "not a table", "name the file .png, .pdf or .svg")
    if bundle.kind == "run":
        raise UserError(str(bundle.path), "is a run bundle", "export takes a grid bundle "
                        "from `probeheat probe` or a generalization bundle; in Python, "
                        "probeheat.open(path).records() gives a run's records")
    if bundle.kind not in ("grid", "generalization"):
        raise UserError(str(bundle.path), f"is a {bundle.kind} bundle, which has no table",
                        f"`probeheat inspect {args.bundles[0]}` shows what it holds")
    print(write_table(open_view(bundle).table(), args.output))
    return 0


def _options(args, x: str, y: str, width: str):
    from ..figures import FigureOptions

    return FigureOptions(
        metric=args.metric or "auc", positions=args.positions, layers=args.layers,
        position=args.position,
        width=args.width or width, height=args.height, vmin=args.vmin, vmax=args.vmax,
        annotate=args.annotate, mark_best=args.mark_best, highlights=tuple(args.highlight),
        baselines=args.baselines,
        title=args.title, dpi=args.dpi, xlabel=x if args.xlabel is None else args.xlabel,
        ylabel=y if args.ylabel is None else args.ylabel, panels=args.panels,
        panel_titles=[t.strip() for t in args.panel_titles.split(",")]
        if args.panel_titles else None)


def _export_grids(grids: list, diff, args) -> Path:
    from ..figures import export_grid, export_panels

    heads = any(g.heads for g in grids)
    x = "Head" if heads else "Token"
    if len(grids) == 1 and (not args.panel_titles and (heads or not args.panels)):
        several = heads and args.position is None and len(grids[0].heads["positions"]) > 1 \
            and (args.positions is None or "," in args.positions or ":" in args.positions)
        return export_grid(grids[0], args.output,
                           _options(args, x, "Layer", "double" if several else "single"),
                           diff=diff)
    if diff is not None:
        raise UserError("--diff", "compares exactly one grid with another",
                        "pass one GRID with --diff OTHER_GRID")
    return export_panels(grids, args.output, _options(args, x, "Layer", "double"))


def _export_steer(bundles: list, args) -> Path:
    """A steer bundle's accuracy against alpha (probeheat/figures/steer.py)."""
    from ..figures.steer import export_steer

    if len(bundles) > 1:
        raise UserError(str(bundles[1].path), "only one steer bundle per figure",
                        "export them one at a time")
    used = [f"--{n.replace('_', '-')}" for n in GRID_ONLY
            if getattr(args, n) not in (None, False, [])]
    if used:
        raise UserError(used[0], "applies to grid bundles, not to a steer sweep",
                        "leave it out")
    return export_steer(bundles[0], args.output, _options(args, None, None, "single"))


def _export_generalization(bundles: list, args) -> Path:
    from ..figures import export_generalization

    if len(bundles) > 1:
        raise UserError(str(bundles[1].path), "only one generalization bundle per figure",
                        "export them one at a time")
    used = [f"--{n.replace('_', '-')}" for n in GRID_ONLY
            if getattr(args, n) not in (None, False, [])]
    if used:
        raise UserError(used[0], "applies to grid bundles, not to a generalization matrix",
                        "leave it out (the matrix is always annotated)")
    return export_generalization(bundles[0], args.output,
                                 _options(args, "Test dataset", "Train dataset", "single"))
