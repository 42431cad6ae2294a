"""Publication figures of grid and generalization bundles (matplotlib; imported only to export).

The look follows the study: matplotlib ``Blues`` from 0.5 to 1.0, layer 0 at the top with a
tick every 2 layers, rotated position labels, a labelled colour bar. Cells are drawn with
``pcolormesh`` so PDF and SVG hold vector cells, fonts are embedded as TrueType, and
identical inputs give byte-identical PNG, PDF and SVG files.

Parsing and validation (the ``parse_*`` / ``select_*`` / ``resolve_*`` functions) are pure and
raise ``UserError``; drawing (``build_*_figure``) takes already-validated views; writing goes
through a temporary file in the target folder and a rename, so a failed export leaves
nothing behind.
"""

from __future__ import annotations

import math
import os
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from .errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .bundle import GeneralizationBundle, GridBundle

WIDTHS = {"single": 3.25, "double": 6.75}
FORMATS = (".png", ".pdf", ".svg")
CMAP = "Blues"
DIFF_CMAP = "RdBu_r"
DEFAULT_RANGE = (0.5, 1.0)
NAN_COLOUR = "#d9d9d9"  # visibly not the palest blue, so a missing probe never reads as 0.5
BEST_COLOUR = "#e6550d"
METRIC_LABELS = {"auc": "AUC", "accuracy": "Accuracy", "f1": "F1", "brier": "Brier score"}
RANGE_FIX = "write a range as LO:HI (inclusive), e.g. 4:28, or a comma list"


class Highlight(NamedTuple):
    """A rectangle over layers layer_lo..layer_hi and positions pos_lo..pos_hi (inclusive)."""

    layer_lo: int
    layer_hi: int
    pos_lo: str
    pos_hi: str


# ---------------------------------------------------------------- pure parsing / validation


def output_format(out: Path, where: str = "-o") -> str:
    """'png' | 'pdf' | 'svg' from the file name; refuses other extensions and bad folders."""
    out = Path(out)
    if out.is_dir():
        raise UserError(str(out), "is a folder", "name a file inside it, e.g. heatmap.pdf")
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(where, f"unsupported extension {suffix or '(none)'!r} in {out}",
                        "name the file .png, .pdf or .svg")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(str(out), f"folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(str(out), f"folder {folder} is not writable", "choose another path")
    return suffix[1:]


def parse_width(text: str | float) -> float:
    """'single' (3.25 in), 'double' (6.75 in) or a width in inches."""
    if isinstance(text, (int, float)):
        value = float(text)
    elif str(text).strip().lower() in WIDTHS:
        return WIDTHS[str(text).strip().lower()]
    else:
        try:
            value = float(str(text).strip().removesuffix("in"))
        except ValueError:
            raise UserError("--width", f"{text!r} is not a width",
                            "use single, double or inches, e.g. 4.5") from None
    if not 1.0 <= value <= 20.0:
        raise UserError("--width", f"{value:g} in is outside 1..20 inches", "use single or double")
    return value


def parse_height(value: float | None) -> float | None:
    if value is not None and not 1.0 <= float(value) <= 20.0:
        raise UserError("--height", f"{value:g} in is outside 1..20 inches",
                        "leave it out to derive the height from the grid")
    return None if value is None else float(value)


def parse_panels(text: str, n: int) -> tuple[int, int]:
    """'2x3' -> (2, 3); refuses a shape that cannot hold n panels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not match or 0 in (int(match[1]), int(match[2])):
        raise UserError("--panels", f"{text!r} is not ROWSxCOLS", "e.g. --panels 2x3")
    rows, cols = int(match[1]), int(match[2])
    if rows * cols < n:
        raise UserError("--panels", f"{rows}x{cols} holds {rows * cols} panels, not {n} grids",
                        "give a shape with at least one cell per grid")
    if (rows - 1) * cols >= n or rows * (cols - 1) >= n:
        raise UserError("--panels", f"{rows}x{cols} leaves a row or column empty for {n} grids",
                        "choose a tighter shape")
    return rows, cols


def _split_list(text: str, where: str) -> list[str]:
    if not str(text).strip():
        raise UserError(where, "selects nothing", "name at least one")
    items = [s.strip() for s in str(text).split(",")]
    if not any(items) or not all(items):
        raise UserError(where, f"{text!r} has an empty item", "write a comma list without gaps")
    return items


def _expand_range(item: str, names: list, where: str, convert, source: str) -> list:
    """'a:b' -> names from a to b inclusive in the grid's order; 'a:' and ':b' are open."""
    lo, _, hi = item.partition(":")
    start = _index_of(convert(lo), names, where, source) if lo.strip() else 0
    stop = _index_of(convert(hi), names, where, source) if hi.strip() else len(names) - 1
    if start > stop:
        raise UserError(where, f"{item!r} runs backwards in {source}", "write LO:HI with LO first")
    return names[start:stop + 1]


def _index_of(value, names: list, where: str, source: str) -> int:
    if value not in names:
        ints = all(isinstance(n, int) for n in names)
        shown = _span(names) if ints and names == list(range(names[0], names[-1] + 1)) \
            else ", ".join(str(n) for n in names)
        raise UserError(where, f"{value!r} is not in {source}", f"available: {shown}")
    return names.index(value)


def _layer_number(text: str, where: str = "--layers") -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise UserError(where, f"{text.strip()!r} is not a layer number", RANGE_FIX) from None


def select_layers(spec: str | Sequence[int] | None, available: list[int],
                  source: str = "this grid") -> list[int]:
    """Layers to show: None = all; '0:16' (inclusive), '8:', '0,4,8' or a list of ints."""
    if spec is None:
        return list(available)
    where = "--layers"
    if isinstance(spec, str):
        out: list[int] = []
        for item in _split_list(spec, where):
            if ":" in item:
                out += _expand_range(item, available, where, _layer_number, source)
            else:
                out.append(available[_index_of(_layer_number(item), available, where, source)])
    else:
        out = [available[_index_of(int(x), available, where, source)] for x in spec]
    return _no_repeats(out, where)


def select_positions(spec: str | Sequence[str] | None, available: list[str],
                     source: str = "this grid") -> list[str]:
    """Positions to show, in the order given: None = all; 'a,b,c'; 'first_answer:-1' ranges."""
    if spec is None:
        return list(available)
    where = "--positions"
    items = _split_list(spec, where) if isinstance(spec, str) else [str(s) for s in spec]
    out: list[str] = []
    for item in items:
        if ":" in item:
            out += _expand_range(item, available, where, str.strip, source)
        else:
            out.append(available[_index_of(item, available, where, source)])
    return _no_repeats(out, where)


def _no_repeats(items: list, where: str) -> list:
    if not items:
        raise UserError(where, "selects nothing", "name at least one")
    seen = {x for x in items if items.count(x) > 1}
    if seen:
        raise UserError(where, f"names {', '.join(map(str, sorted(seen, key=str)))} twice",
                        "name each once")
    return items


def parse_highlight(text: str) -> Highlight:
    """'4:28,first_answer:-1' -> Highlight(4, 28, 'first_answer', '-1'); single items allowed."""
    layers, sep, positions = str(text).partition(",")
    if not sep or not layers.strip() or not positions.strip() or "," in positions:
        raise UserError("--highlight", f"{text!r} is not LAYERS,POSITIONS",
                        "e.g. --highlight 4:28,first_answer:-1")
    lo, _, hi = layers.partition(":")
    plo, _, phi = positions.partition(":")
    hi, phi = hi or lo, phi or plo
    if not all(s.strip() for s in (lo, hi, plo, phi)):
        raise UserError("--highlight", f"{text!r} has an open range",
                        "give both ends, e.g. 4:28,first_answer:-1")
    return Highlight(_layer_number(lo, "--highlight"), _layer_number(hi, "--highlight"),
                     plo.strip(), phi.strip())


def resolve_highlight(h: Highlight, layers: list[int], positions: list[str]) -> tuple:
    """(row_lo, row_hi, col_lo, col_hi) of a highlight within the shown grid."""
    where = "--highlight"
    for layer in (h.layer_lo, h.layer_hi):
        if layer not in layers:
            raise UserError(where, f"layer {layer} is not shown (layers {_span(layers)})",
                            "highlight layers inside the figure")
    for pos in (h.pos_lo, h.pos_hi):
        if pos not in positions:
            raise UserError(where, f"position {pos!r} is not shown",
                            f"shown: {', '.join(positions)}")
    rows = sorted((layers.index(h.layer_lo), layers.index(h.layer_hi)))
    cols = sorted((positions.index(h.pos_lo), positions.index(h.pos_hi)))
    return rows[0], rows[1], cols[0], cols[1]


def _span(layers: list[int]) -> str:
    return f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else str(layers[0])


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric.lower(), metric)


# ---------------------------------------------------------------- views: data ready to draw


@dataclass
class HeatmapView:
    """One validated panel: values [rows, cols] with row/column labels and a colour scale."""

    values: np.ndarray
    layers: list[int]
    positions: list[str]
    label: str
    vmin: float
    vmax: float
    cmap: str = CMAP
    title: str | None = None
    boxes: list[tuple] = field(default_factory=list)  # resolved highlights
    best: tuple[int, int] | None = None


def _check_metric(grid: GridBundle, metric: str) -> None:
    if metric not in grid.metrics:
        raise UserError("--metric", f"{grid.path} has no metric {metric!r}",
                        f"this grid has: {', '.join(grid.metrics)}")


def _check_range(vmin: float, vmax: float) -> None:
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmin >= vmax:
        raise UserError("--vmin/--vmax", f"{vmin:g}..{vmax:g} is not an increasing range",
                        "give --vmin below --vmax")


def grid_view(grid: GridBundle, *, metric: str = "auc", positions=None, layers=None,
              vmin: float | None = None, vmax: float | None = None, mark_best: bool = False,
              highlights: Sequence = (), title: str | None = None,
              diff: GridBundle | None = None) -> HeatmapView:
    """Select, validate and (with ``diff``) subtract; everything a figure needs, no drawing."""
    _check_metric(grid, metric)
    all_layers, all_positions = grid.layers, grid.positions
    if diff is not None:
        _check_metric(diff, metric)
        all_layers = [x for x in all_layers if x in diff.layers]
        all_positions = [p for p in all_positions if p in diff.positions]
        if not all_layers or not all_positions:
            raise UserError("--diff", f"{grid.path} and {diff.path} share no "
                            f"{'layers' if not all_layers else 'positions'}",
                            "compare grids over the same layers and positions")
    source = str(grid.path) if diff is None else f"both {grid.path} and {diff.path}"
    shown_layers = select_layers(layers, all_layers, source)
    shown_positions = select_positions(positions, all_positions, source)
    values = _cells(grid, metric, shown_layers, shown_positions)
    if diff is not None:
        values = values - _cells(diff, metric, shown_layers, shown_positions)
        lo, hi = _diff_range(values, vmin, vmax)
        cmap, label = DIFF_CMAP, f"Δ {metric_label(metric)}"
    else:
        lo = DEFAULT_RANGE[0] if vmin is None else float(vmin)
        hi = DEFAULT_RANGE[1] if vmax is None else float(vmax)
        cmap, label = CMAP, metric_label(metric)
    _check_range(lo, hi)
    boxes = [resolve_highlight(h if isinstance(h, Highlight) else parse_highlight(h),
                               shown_layers, shown_positions) for h in highlights]
    return HeatmapView(values, shown_layers, shown_positions, label, lo, hi, cmap, title,
                       boxes, _best(values) if mark_best else None)


def _cells(grid: GridBundle, metric: str, layers: list[int], positions: list[str]) -> np.ndarray:
    rows = [grid.layers.index(x) for x in layers]
    cols = [grid.positions.index(p) for p in positions]
    return grid.metric(metric)[np.ix_(rows, cols)]


def _diff_range(values: np.ndarray, vmin, vmax) -> tuple[float, float]:
    """Symmetric limits around 0 unless the user set them."""
    finite = np.abs(values[np.isfinite(values)])
    lim = max(float(finite.max()) if finite.size else 0.0, 0.01)
    return (-lim if vmin is None else float(vmin)), (lim if vmax is None else float(vmax))


def _best(values: np.ndarray) -> tuple[int, int] | None:
    if not np.isfinite(values).any():
        return None
    i, j = np.unravel_index(np.nanargmax(values), values.shape)
    return int(i), int(j)


# ---------------------------------------------------------------- drawing


def _rc(fontsize: float) -> dict:
    """Settings for the figure only (applied in an rc_context, never globally)."""
    return {
        "pdf.fonttype": 42, "ps.fonttype": 42,
        # Text stays <text> in SVG (editable, like the TrueType text in the PDF).
        "svg.fonttype": "none", "svg.hashsalt": "probeheat",
        # The font matplotlib ships, so the output does not depend on the machine's fonts.
        "font.family": "sans-serif", "font.sans-serif": ["DejaVu Sans"],
        "font.size": fontsize, "axes.titlesize": fontsize + 1, "axes.labelsize": fontsize,
        "xtick.labelsize": fontsize - 1, "ytick.labelsize": fontsize - 1,
        "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6,
        "xtick.major.size": 2.5, "ytick.major.size": 2.5, "savefig.bbox": None,
        "figure.constrained_layout.h_pad": 0.03, "figure.constrained_layout.w_pad": 0.03,
    }


def _fontsize(width: float) -> float:
    return 7.0 if width < 5 else 8.0


def layer_ticks(layers: list[int]) -> list[int]:
    """Row indices to label: layers divisible by 2 (4, 8 for tall grids) when contiguous."""
    step = 2 if len(layers) <= 48 else 4 if len(layers) <= 96 else 8
    contiguous = layers == list(range(layers[0], layers[0] + len(layers)))
    if contiguous:
        rows = [i for i, x in enumerate(layers) if x % step == 0]
        if len(rows) >= 2 or len(layers) == 1:
            return rows
    return list(range(0, len(layers), 1 if len(layers) <= 40 else step))


def figure_size(width: float, rows: int, cols: int, xlabels: Sequence[str],
                ylabels: Sequence[str], panels: tuple[int, int] = (1, 1),
                title: bool = False) -> tuple[float, float]:
    """Height from the grid's aspect: near-square cells, kept between 0.5 and 1.35 widths."""
    fs = _fontsize(width)
    char = 0.6 * (fs - 1) / 72  # inches per tick-label character
    label_w = max(len(str(s)) for s in ylabels) * char + 2.2 * fs / 72 + 0.08
    label_h = max(len(str(s)) for s in xlabels) * char + 2.2 * fs / 72 + 0.08
    prow, pcol = panels
    plot_w = max(width - 0.6 - pcol * label_w, 0.5 * width) / pcol
    cell = plot_w / cols
    height = prow * (rows * cell + label_h + (0.2 if prow > 1 else 0)) + (0.25 if title else 0.08)
    height = min(max(height, 0.5 * width), 1.35 * width, 7.0 * max(1, prow / 2))
    return round(width, 2), round(height, 2)


def _draw_heatmap(ax, view: HeatmapView, norm, cmap, *, annotate: bool, xlabel, ylabel,
                  cell_pt: tuple[float, float]):
    rows, cols = view.values.shape
    mesh = ax.pcolormesh(np.arange(cols + 1) - 0.5, np.arange(rows + 1) - 0.5,
                         np.ma.masked_invalid(view.values), cmap=cmap, norm=norm,
                         edgecolors="face", linewidth=0.1)  # 'face' hides hairline seams
    mesh.set_gid("cells")
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)  # layer 0 at the top, as in the study
    ax.set_xticks(range(cols), [str(p) for p in view.positions], rotation=90)
    ticks = layer_ticks(view.layers)
    ax.set_yticks(ticks, [str(view.layers[i]) for i in ticks])
    ax.tick_params(length=2.5, pad=1.5)
    if xlabel:
        ax.set_xlabel(xlabel)
    if ylabel:
        ax.set_ylabel(ylabel)
    if view.title:
        ax.set_title(view.title)
    if annotate:
        _annotate(ax, view.values, norm, cmap, cell_pt)
    _draw_boxes(ax, view)
    return mesh


def _annotate(ax, values: np.ndarray, norm, cmap, cell_pt: tuple[float, float]) -> None:
    """Values in cells; white text on dark cells so it stays readable."""
    rows, cols = values.shape
    size = max(3.0, min(7.0, 0.8 * cell_pt[1], cell_pt[0] / (4 * 0.6)))
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if not np.isfinite(v):
                continue
            r, g, b, _ = cmap(norm(v))
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=size,
                    color="white" if dark else "black")


def _draw_boxes(ax, view: HeatmapView) -> None:
    from matplotlib.patches import Rectangle

    for k, (r0, r1, c0, c1) in enumerate(view.boxes, 1):
        box = Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0 + 1, r1 - r0 + 1, fill=False,
                        edgecolor="black", linewidth=1.5, clip_on=False, zorder=3)
        box.set_gid(f"highlight-{k}")
        ax.add_patch(box)
    if view.best is not None:
        i, j = view.best
        box = Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=BEST_COLOUR,
                        linewidth=1.2, zorder=4)
        box.set_gid("best-cell")
        ax.add_patch(box)


def _norm_cmap(view: HeatmapView):
    import matplotlib
    from matplotlib.colors import Normalize, TwoSlopeNorm

    cmap = matplotlib.colormaps[view.cmap].with_extremes(bad=NAN_COLOUR)
    if view.cmap == DIFF_CMAP and view.vmin < 0 < view.vmax:
        return TwoSlopeNorm(0.0, view.vmin, view.vmax), cmap
    return Normalize(view.vmin, view.vmax), cmap


def _extend(views: Sequence[HeatmapView]) -> str:
    """Colour-bar arrows when some cell lies outside the scale (its colour is clipped)."""
    vals = np.concatenate([v.values[np.isfinite(v.values)] for v in views])
    low = bool(vals.size and vals.min() < views[0].vmin)
    high = bool(vals.size and vals.max() > views[0].vmax)
    return {(False, False): "neither", (True, False): "min", (False, True): "max"}.get(
        (low, high), "both")


def _vector_bar(bar, label: str) -> None:
    """Matplotlib rasterizes colour bars of 50+ steps; keep the whole figure vector."""
    bar.solids.set_rasterized(False)
    bar.solids.set_edgecolor("face")
    bar.set_label(label)
    bar.ax.set_gid("colorbar")
    bar.outline.set_linewidth(0.6)


def _new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # non-interactive on purpose: no display, no pyplot state
    return fig


def build_grid_figure(views: Sequence[HeatmapView], *, width: float = WIDTHS["single"],
                      height: float | None = None, panels: tuple[int, int] = (1, 1),
                      annotate: bool = False, xlabel: str | None = "Token",
                      ylabel: str | None = "Layer", title: str | None = None) -> Figure:
    """One or more heatmaps sharing one colour bar. Call inside ``figure_rc``."""
    prow, pcol = panels
    xlabels = [p for v in views for p in v.positions]
    ylabels = [str(x) for v in views for x in v.layers]
    rows = max(v.values.shape[0] for v in views)
    cols = max(v.values.shape[1] for v in views)
    w, h = figure_size(width, rows, cols, xlabels, ylabels, panels, bool(title))
    fig = _new_figure((w, height or h))
    axes = fig.subplots(prow, pcol, squeeze=False)
    norm, cmap = _norm_cmap(views[0])
    cell_pt = (72 * w * 0.8 / (pcol * cols), 72 * (height or h) * 0.7 / (prow * rows))
    same = all(v.layers == views[0].layers and v.positions == views[0].positions for v in views)
    mesh = None
    for k, ax in enumerate(axes.flat):
        if k >= len(views):
            ax.set_visible(False)
            continue
        r, c = divmod(k, pcol)
        outer_x = r == prow - 1 or k + pcol >= len(views)
        ax.set_gid("heatmap" if len(views) == 1 else f"heatmap-{k + 1}")
        mesh = _draw_heatmap(ax, views[k], norm, cmap, annotate=annotate,
                             xlabel=xlabel if outer_x else None,
                             ylabel=ylabel if c == 0 else None, cell_pt=cell_pt)
        if same and not outer_x:
            ax.tick_params(labelbottom=False)
        if same and c > 0:
            ax.tick_params(labelleft=False)
    bar = fig.colorbar(mesh, ax=axes.ravel().tolist(), extend=_extend(views),
                       fraction=0.08 if pcol == 1 else 0.04, pad=0.02, aspect=30)
    _vector_bar(bar, views[0].label)
    if title and len(views) > 1:
        fig.suptitle(title)
    return fig


def build_generalization_figure(values: np.ndarray, train: list[str], test: list[str], *,
                                width: float, height: float | None = None, vmin: float = 0.5,
                                vmax: float = 1.0, metric: str = "auc",
                                xlabel: str = "Test dataset", ylabel: str = "Train dataset",
                                title: str | None = None) -> Figure:
    """Rows = probe trained on, columns = tested on; every cell annotated."""
    view = HeatmapView(values, list(range(len(train))), test, metric_label(metric), vmin, vmax,
                       title=title)
    fs = _fontsize(width)
    char = 0.6 * (fs - 1) / 72
    side = width - 0.9 - max(len(s) for s in train) * char
    cell = side / len(test)
    auto_h = len(train) * cell + max(len(s) for s in test) * char * 0.75 + 0.5
    h = height or round(min(max(auto_h, 0.5 * width), 1.35 * width), 2)
    fig = _new_figure((width, h))
    ax = fig.subplots()
    ax.set_gid("heatmap")
    norm, cmap = _norm_cmap(view)
    cell_pt = (72 * cell, 72 * (h - 0.8) / len(train))
    mesh = _draw_heatmap(ax, view, norm, cmap, annotate=True, xlabel=xlabel, ylabel=ylabel,
                         cell_pt=cell_pt)
    ax.set_yticks(range(len(train)), train)
    ax.set_xticks(range(len(test)), test, rotation=45, ha="right", rotation_mode="anchor")
    bar = fig.colorbar(mesh, ax=ax, extend=_extend([view]), fraction=0.08, pad=0.03, aspect=25)
    _vector_bar(bar, view.label)
    return fig


# ---------------------------------------------------------------- writing


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
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        # os.open with 0o666 lets the umask decide permissions, like any other new file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as handle:
            fig.savefig(handle, format=fmt, dpi=dpi, metadata=metadata)
        os.replace(tmp, out)
    except OSError as exc:
        raise UserError(str(out), f"cannot write ({exc.strerror or exc})",
                        "choose a writable path") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def _check_dpi(dpi: int) -> int:
    if not 30 <= int(dpi) <= 2400:
        raise UserError("--dpi", f"{dpi} is outside 30..2400", "the default is 200")
    return int(dpi)


def export_grid(grid: GridBundle, out: Path, *, metric: str = "auc",
                positions: str | Sequence[str] | None = None,
                layers: str | Sequence[int] | None = None, width: str | float = "single",
                height: float | None = None, vmin: float | None = None,
                vmax: float | None = None, annotate: bool = False, mark_best: bool = False,
                highlights: Sequence[Highlight | str] = (), title: str | None = None,
                diff: GridBundle | None = None, dpi: int = 200, xlabel: str | None = "Token",
                ylabel: str | None = "Layer") -> Path:
    """Write one grid's heatmap to ``out`` (.png/.pdf/.svg). ``vmin``/``vmax`` None = the
    study's 0.5..1.0, or limits symmetric around 0 with ``diff`` (plots grid - diff)."""
    fmt = output_format(out)
    w, h, dpi = parse_width(width), parse_height(height), _check_dpi(dpi)
    view = grid_view(grid, metric=metric, positions=positions, layers=layers, vmin=vmin,
                     vmax=vmax, mark_best=mark_best, highlights=highlights, title=title,
                     diff=diff)
    with figure_rc(w):
        fig = build_grid_figure([view], width=w, height=h, annotate=annotate, xlabel=xlabel,
                                ylabel=ylabel)
        return save_figure(fig, Path(out), fmt, dpi)


def export_panels(grids: Sequence[GridBundle], out: Path, *, panels: str | None = None,
                  panel_titles: Sequence[str] | None = None, metric: str = "auc",
                  positions=None, layers=None, width: str | float = "double",
                  height: float | None = None, vmin: float | None = None,
                  vmax: float | None = None, annotate: bool = False, mark_best: bool = False,
                  highlights: Sequence[Highlight | str] = (), title: str | None = None,
                  dpi: int = 200, xlabel: str | None = "Token",
                  ylabel: str | None = "Layer") -> Path:
    """Several grids in a ROWSxCOLS matrix (default one row) sharing one colour bar."""
    fmt = output_format(out)
    w, h, dpi = parse_width(width), parse_height(height), _check_dpi(dpi)
    shape = parse_panels(panels, len(grids)) if panels else (1, len(grids))
    if panel_titles is not None and len(panel_titles) != len(grids):
        raise UserError("--panel-titles", f"{len(panel_titles)} titles for {len(grids)} grids",
                        "give one title per grid, comma-separated")
    views = [grid_view(g, metric=metric, positions=positions, layers=layers, vmin=vmin,
                       vmax=vmax, mark_best=mark_best, highlights=highlights,
                       title=panel_titles[k] if panel_titles else None)
             for k, g in enumerate(grids)]
    with figure_rc(w):
        fig = build_grid_figure(views, width=w, height=h, panels=shape, annotate=annotate,
                                xlabel=xlabel, ylabel=ylabel, title=title)
        return save_figure(fig, Path(out), fmt, dpi)


def export_generalization(bundle: GeneralizationBundle, out: Path, *,
                          width: str | float = "single", height: float | None = None,
                          vmin: float | None = None, vmax: float | None = None,
                          title: str | None = None, dpi: int = 200,
                          xlabel: str | None = "Test dataset",
                          ylabel: str | None = "Train dataset") -> Path:
    """The generalization matrix (rows = trained on, columns = tested on), values annotated."""
    fmt = output_format(out)
    w, h, dpi = parse_width(width), parse_height(height), _check_dpi(dpi)
    lo = DEFAULT_RANGE[0] if vmin is None else float(vmin)
    hi = DEFAULT_RANGE[1] if vmax is None else float(vmax)
    _check_range(lo, hi)
    values = bundle.matrix()
    train, test = bundle.train_names, bundle.test_names
    if values.shape != (len(train), len(test)) or 0 in values.shape:
        raise UserError(str(bundle.path), f"matrix {values.shape} does not match "
                        f"{len(train)} train x {len(test)} test runs", "re-run generalize")
    with figure_rc(w):
        fig = build_generalization_figure(values, train, test, width=w, height=h, vmin=lo,
                                          vmax=hi, xlabel=xlabel, ylabel=ylabel, title=title)
        return save_figure(fig, Path(out), fmt, dpi)
