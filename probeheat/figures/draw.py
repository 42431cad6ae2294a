"""Drawing heatmaps with matplotlib (imported inside the functions, only when exporting).

The look follows the study: matplotlib ``Blues`` from 0.5 to 1.0, layer 0 at the top with a
tick every 2 layers, rotated position labels, a labelled colour bar. Cells are drawn with
``pcolormesh`` so PDF and SVG hold vector cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UserError
from .options import FigureOptions
from .view import DIFF_CMAP, HeatmapView, metric_label

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

NAN_COLOUR = "#d9d9d9"  # visibly not the palest blue, so a missing probe never reads as 0.5
BEST_COLOUR = "#e6550d"


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


def _draw_heatmap(ax, view: HeatmapView, norm, cmap, *, xlabel, ylabel):
    rows, cols = view.values.shape
    mesh = ax.pcolormesh(np.arange(cols + 1) - 0.5, np.arange(rows + 1) - 0.5,
                         np.ma.masked_invalid(view.values), cmap=cmap, norm=norm,
                         edgecolors="face", linewidth=0.1)  # 'face' hides hairline seams
    mesh.set_gid("cells")
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(rows - 0.5, -0.5)  # layer 0 at the top, as in the study
    if all(str(p).isdigit() for p in view.positions):  # head numbers: upright, thinned
        heads = [int(p) for p in view.positions]
        ticks = layer_ticks(heads) if cols > 16 else list(range(cols))
        ax.set_xticks(ticks, [str(heads[i]) for i in ticks])
    else:
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
    _draw_hatch(ax, view)
    _draw_boxes(ax, view)
    return mesh


MIN_TYPE = 4.5  # points: smaller annotations are not readable in print
MAX_TYPE = 7.0
EM_PER_CHAR = 0.62  # DejaVu Sans digits are 0.636 em wide, the point narrower


def annotation_size(fig, ax, view: HeatmapView) -> float:
    """The font size at which a cell's text fits its cell, measured on the laid-out figure;
    a one-line UserError says what width is needed when it would be unreadable."""
    fig.draw_without_rendering()  # constrained layout decides the axes' size
    box = ax.get_window_extent()
    rows, cols = view.values.shape
    cell_w, cell_h = box.width * 72 / fig.dpi / cols, box.height * 72 / fig.dpi / rows
    chars, lines = (4, 2) if view.spread is not None else (len(_cell_text(view, 0, 0)) or 4, 1)
    size = min(MAX_TYPE, 0.85 * cell_w / (chars * EM_PER_CHAR), 0.8 * cell_h / (1.2 * lines))
    if size < MIN_TYPE:
        axes_w = box.width / fig.dpi  # inches; labels and the colour bar take the rest
        need = math.ceil(10 * (fig.get_figwidth() - axes_w + 1.1 * axes_w * MIN_TYPE / size)) / 10
        raise UserError("--annotate", f"cells are {cell_w:.0f} x {cell_h:.0f} pt here: values "
                        f"need {MIN_TYPE} pt type", f"use --width {need:.1f} (inches) or more, "
                        "--height, or fewer --positions / --layers")
    return size


def _cell_text(view: HeatmapView, i: int, j: int) -> str:
    v = view.values[i, j]
    if not np.isfinite(v):
        return ""
    text = f"{v:+.2f}" if view.cmap == DIFF_CMAP else f"{v:.2f}"
    if view.spread is not None and np.isfinite(view.spread[i, j]):
        text += f"\n±{view.spread[i, j]:.2f}".replace("0.", ".")
    return text


def _annotate(ax, view: HeatmapView, norm, cmap, size: float) -> None:
    """Values in cells; white text on dark cells so it stays readable."""
    rows, cols = view.values.shape
    for i in range(rows):
        for j in range(cols):
            text = _cell_text(view, i, j)
            if not text:
                continue
            r, g, b, _ = cmap(norm(view.values[i, j]))
            dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
            ax.text(j, i, text, ha="center", va="center", fontsize=size,
                    color="white" if dark else "black", linespacing=1.0)


HATCH = "////"
HATCH_COLOUR = "#525252"


def _draw_hatch(ax, view: HeatmapView) -> None:
    """Diff cells whose difference is not significant, hatched (see the legend)."""
    from matplotlib.patches import Rectangle

    if view.hatch is None:
        return
    for i, j in np.argwhere(view.hatch):
        cell = Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch=HATCH, linewidth=0,
                         edgecolor=HATCH_COLOUR, zorder=2)
        cell.set_gid(f"ns-{i}-{j}")
        ax.add_patch(cell)


def _hatch_legend(fig) -> None:
    from matplotlib.patches import Patch

    handle = Patch(facecolor="white", edgecolor=HATCH_COLOUR, hatch=HATCH, linewidth=0.4,
                   label="not significant: q >= 0.05 (DeLong, Benjamini-Hochberg)")
    legend = fig.legend(handles=[handle], loc="outside lower center", frameon=False,
                        fontsize="small", handlelength=1.5)
    legend.set_gid("legend-not-significant")


def _draw_baselines(ax, view: HeatmapView, norm, cmap) -> None:
    """A one-column strip of the grid's best baselines on the same colour scale."""
    names = [n for n, _ in view.baselines]
    values = np.array([[v] for _, v in view.baselines])
    mesh = ax.pcolormesh([-0.5, 0.5], np.arange(len(names) + 1) - 0.5, values, cmap=cmap,
                         norm=norm, edgecolors="face", linewidth=0.1)
    mesh.set_gid("baseline-cells")
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xticks([])
    ax.yaxis.tick_right()
    ax.set_yticks(range(len(names)), names)
    ax.tick_params(length=0, pad=1.5, labelsize="small")
    ax.set_title("Baselines", fontsize="small")
    for k, (_, v) in enumerate(view.baselines):
        r, g, b, _ = cmap(norm(v))
        dark = 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5
        ax.text(0, k, f"{v:.2f}", ha="center", va="center", fontsize="x-small",
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


def build_grid_figure(views: Sequence[HeatmapView], opts: FigureOptions,
                      panels: tuple[int, int] = (1, 1)) -> Figure:
    """One or more heatmaps sharing one colour bar. Call inside ``figure_rc``."""
    (width, height), title = opts.size(), opts.title
    prow, pcol = panels
    xlabels = [p for v in views for p in v.positions]
    ylabels = [str(x) for v in views for x in v.layers]
    rows = max(v.values.shape[0] for v in views)
    cols = max(v.values.shape[1] for v in views)
    w, h = figure_size(width, rows, cols, xlabels, ylabels, panels, bool(title))
    fig = _new_figure((w, height or h))
    strip = len(views) == 1 and bool(views[0].baselines)
    axes = fig.subplots(prow, pcol + strip, squeeze=False,
                        width_ratios=[cols, 1] if strip else None)
    heat_axes = axes[:, :pcol] if strip else axes
    norm, cmap = _norm_cmap(views[0])
    same = all(v.layers == views[0].layers and v.positions == views[0].positions for v in views)
    mesh = None
    for k, ax in enumerate(heat_axes.flat):
        if k >= len(views):
            ax.set_visible(False)
            continue
        r, c = divmod(k, pcol)
        outer_x = r == prow - 1 or k + pcol >= len(views)
        ax.set_gid("heatmap" if len(views) == 1 else f"heatmap-{k + 1}")
        mesh = _draw_heatmap(ax, views[k], norm, cmap, xlabel=opts.xlabel if outer_x else None,
                             ylabel=opts.ylabel if c == 0 else None)
        if same and not outer_x:
            ax.tick_params(labelbottom=False)
        if same and c > 0:
            ax.tick_params(labelleft=False)
    if strip:
        axes[0, -1].set_gid("baselines")
        _draw_baselines(axes[0, -1], views[0], norm, cmap)
    bar = fig.colorbar(mesh, ax=axes.ravel().tolist(), extend=_extend(views),
                       fraction=0.08 if pcol == 1 else 0.04, pad=0.02, aspect=30)
    _vector_bar(bar, views[0].label)
    if title and len(views) > 1:
        fig.suptitle(title)
    if any(v.hatch is not None and v.hatch.any() for v in views):
        _hatch_legend(fig)
    if opts.annotate:
        visible = [ax for ax in heat_axes.flat if ax.get_visible()]
        size = annotation_size(fig, visible[0], views[0])
        for ax, view in zip(visible, views, strict=False):
            _annotate(ax, view, norm, cmap, size)
    return fig


def build_generalization_figure(values: np.ndarray, train: list[str], test: list[str],
                                opts: FigureOptions) -> Figure:
    """Rows = probe trained on, columns = tested on; every cell annotated."""
    (width, height), (vmin, vmax) = opts.size(), opts.color_range()
    view = HeatmapView(values, list(range(len(train))), test, metric_label(opts.metric), vmin,
                       vmax, title=opts.title)
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
    mesh = _draw_heatmap(ax, view, norm, cmap, xlabel=opts.xlabel, ylabel=opts.ylabel)
    ax.set_yticks(range(len(train)), train)
    ax.set_xticks(range(len(test)), test, rotation=45, ha="right", rotation_mode="anchor")
    bar = fig.colorbar(mesh, ax=ax, extend=_extend([view]), fraction=0.08, pad=0.03, aspect=25)
    _vector_bar(bar, view.label)
    _annotate(ax, view, norm, cmap, annotation_size(fig, ax, view))
    return fig


