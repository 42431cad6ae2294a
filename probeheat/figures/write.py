"""Writing figures: grids, panels and generalization matrices to PNG / PDF / SVG.

Identical inputs give byte-identical files; fonts are embedded as TrueType; writing goes
through a temporary file in the target folder and a rename, so a failed export leaves the
old file (or nothing) in place.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_atomically
from ..errors import UserError
from .draw import _fontsize, _rc, build_generalization_figure, build_grid_figure
from .options import FigureOptions, output_format, parse_panels
from .view import grid_view, head_views

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from ..bundle import GeneralizationBundle, GridBundle


def _no_ligatures(fig: Figure) -> None:
    """Matplotlib >= 3.11 shapes text with HarfBuzz: identifiers such as 'first_answer' would
    get an 'fi' ligature glyph, which needs a second embedded font subset (~0.3 s per PDF)."""
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        if hasattr(text, "set_fontfeatures"):
            text.set_fontfeatures(["-liga", "-clig", "-dlig"])


def figure_rc(width: float):
    import matplotlib

    return matplotlib.rc_context(_rc(_fontsize(width)))


def save_figure(fig: Figure, out: Path, fmt: str, dpi: int = 200) -> Path:
    """Write through a temporary file beside ``out``; a failure leaves no file behind."""
    out = Path(out)
    _no_ligatures(fig)
    metadata = {"png": {"Software": None}, "pdf": {"CreationDate": None},
                "svg": {"Date": None}}[fmt]
    write_atomically(out, lambda handle: fig.savefig(handle, format=fmt, dpi=dpi,
                                                     metadata=metadata))
    return out


def export_grid(grid: GridBundle, out: Path, options: FigureOptions | None = None, *,
                diff: GridBundle | None = None, **changes) -> Path:
    """Write one grid's heatmap to ``out`` (.png/.pdf/.svg). The colour range defaults to
    the study's 0.5..1.0, or to limits symmetric around 0 with ``diff`` (plots grid - diff).
    ``options`` / keywords: the fields of ``FigureOptions``."""
    opts = FigureOptions.of(options, **changes)
    fmt = output_format(out)
    (width, _), dpi = opts.size(), opts.checked_dpi()
    opts.check_texts()
    if grid.heads:
        views = head_views(grid, opts, diff=diff)
        shape = parse_panels(opts.panels, len(views)) if opts.panels else auto_panels(len(views))
    else:
        if opts.position is not None:
            raise UserError("--position", f"{grid.path} is not a head grid",
                            "use --positions to choose a grid's columns")
        views, shape = [grid_view(grid, opts, diff=diff)], (1, 1)
    with figure_rc(width):
        return save_figure(build_grid_figure(views, opts, shape), Path(out), fmt, dpi)


def auto_panels(n: int) -> tuple[int, int]:
    """Rows x columns for n head-grid panels: one row up to 4, then rows of 4."""
    cols = min(n, 4)
    return -(-n // cols), cols


def export_panels(grids: Sequence[GridBundle], out: Path, options: FigureOptions | None = None,
                  **changes) -> Path:
    """Several grids in a ROWSxCOLS matrix (default one row) sharing one colour bar."""
    opts = FigureOptions.of(options, **{"width": "double", **changes})
    fmt = output_format(out)
    (width, _), dpi = opts.size(), opts.checked_dpi()
    opts.check_texts()
    shape = parse_panels(opts.panels, len(grids)) if opts.panels else (1, len(grids))
    titles = opts.panel_titles
    if titles is not None and len(titles) != len(grids):
        raise UserError("--panel-titles", f"{len(titles)} titles for {len(grids)} grids",
                        "give one title per grid, comma-separated")
    views = [_panel_view(g, opts, titles[k] if titles else None) for k, g in enumerate(grids)]
    with figure_rc(width):
        return save_figure(build_grid_figure(views, opts, shape), Path(out), fmt, dpi)


def _panel_view(grid: GridBundle, opts: FigureOptions, title: str | None):
    """One grid's panel; a head grid gives its one position's layer x head panel."""
    if not grid.heads:
        if opts.position is not None:
            raise UserError("--position", f"{grid.path} is not a head grid",
                            "use --positions to choose a grid's columns")
        return grid_view(grid, opts, title=title)
    views = head_views(grid, opts)
    if len(views) != 1:
        raise UserError(str(grid.path), f"is a head grid of {len(views)} positions",
                        "pass --position P to put one position of each grid in a panel")
    if title is not None:
        views[0].title = title
    return views[0]


def export_generalization(bundle: GeneralizationBundle, out: Path,
                          options: FigureOptions | None = None, **changes) -> Path:
    """The generalization matrix (rows = trained on, columns = tested on), values annotated."""
    opts = FigureOptions.of(options, **{"xlabel": "Test dataset", "ylabel": "Train dataset",
                                        **changes})
    fmt = output_format(out)
    (width, _), dpi = opts.size(), opts.checked_dpi()
    opts.color_range()
    opts.check_texts()
    values = bundle.matrix()
    train, test = bundle.train_names, bundle.test_names
    if values.shape != (len(train), len(test)) or 0 in values.shape:
        raise UserError(str(bundle.path), f"matrix {values.shape} does not match "
                        f"{len(train)} train x {len(test)} test runs", "re-run generalize")
    with figure_rc(width):
        fig = build_generalization_figure(values, train, test, opts)
        return save_figure(fig, Path(out), fmt, dpi)
