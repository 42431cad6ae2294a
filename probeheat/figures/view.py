"""The view model of a figure: validated values, labels and colour scale, ready to draw."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..bundle.grid import LOWER_IS_BETTER, best_index
from ..errors import UserError
from ..selection import select_layers, select_positions
from .options import (
    FigureOptions,
    Highlight,
    check_range,
    parse_highlight,
    resolve_highlight,
)

if TYPE_CHECKING:  # pragma: no cover
    from ..bundle import GridBundle

CMAP = "Blues"
DIFF_CMAP = "RdBu_r"
METRIC_LABELS = {"auc": "AUC", "accuracy": "Accuracy", "f1": "F1", "brier": "Brier score",
                 "ece": "ECE (lower is better)", "recall_at_fpr1": "Recall at 1% FPR",
                 "recall_at_fpr5": "Recall at 5% FPR"}


def metric_label(metric: str) -> str:
    return METRIC_LABELS.get(metric.lower(), metric)


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
    spread: np.ndarray | None = None  # over seeds, shown beside annotated values
    hatch: np.ndarray | None = None  # diff cells whose difference is not significant
    baselines: list[tuple[str, float]] = field(default_factory=list)  # (name, AUC), best first


def _check_metric(grid: GridBundle, metric: str) -> None:
    if metric not in grid.metrics:
        raise UserError("--metric", f"{grid.path} has no metric {metric!r}",
                        f"this grid has: {', '.join(grid.metrics)}")


def _shared(grid: GridBundle, diff: GridBundle | None) -> tuple[list[int], list[str]]:
    """The layers and positions a figure may show: the grid's, or those both grids have."""
    if diff is None:
        return grid.layers, grid.positions
    aligned = grid.grid_values.align(diff.grid_values)
    layers = [grid.layers[i] for i in aligned.rows_a] if aligned else []
    positions = [grid.positions[j] for j in aligned.cols_a] if aligned else []
    if not layers or not positions:
        missing = "layers" if not set(grid.layers) & set(diff.layers) else "positions"
        raise UserError("--diff", f"{grid.path} and {diff.path} share no {missing}",
                        "compare grids over the same layers and positions")
    return layers, positions


def grid_view(grid: GridBundle, options: FigureOptions | None = None, *,
              diff: GridBundle | None = None, **changes) -> HeatmapView:
    """Select, validate and (with ``diff``) subtract; everything a figure needs, no drawing."""
    opts = FigureOptions.of(options, **changes)
    _check_metric(grid, opts.metric)
    if diff is not None:
        _check_metric(diff, opts.metric)
    all_layers, all_positions = _shared(grid, diff)
    source = str(grid.path) if diff is None else f"both {grid.path} and {diff.path}"
    layers = select_layers(opts.layers, all_layers, source=source)
    positions = select_positions(opts.positions, all_positions, source=source)
    values = _cells(grid, opts.metric, layers, positions)
    if diff is not None:
        values = values - _cells(diff, opts.metric, layers, positions)
        lo, hi = _diff_range(values, opts.vmin, opts.vmax)
        check_range(lo, hi)
        cmap, label = DIFF_CMAP, f"Δ {metric_label(opts.metric)}"
    else:
        (lo, hi), label = opts.color_range(), metric_label(opts.metric)
        cmap = f"{CMAP}_r" if opts.metric in LOWER_IS_BETTER else CMAP
    boxes = [resolve_highlight(h if isinstance(h, Highlight) else parse_highlight(h),
                               layers, positions) for h in opts.highlights]
    lower = opts.metric in LOWER_IS_BETTER and diff is None
    view = HeatmapView(values, layers, positions, label, lo, hi, cmap, opts.title, boxes,
                       best_index(-values if lower else values) if opts.mark_best else None)
    cells = np.ix_([grid.layers.index(x) for x in layers],
                   [grid.positions.index(p) for p in positions])
    if diff is not None and opts.metric == "auc":
        view.hatch = _not_significant(grid, diff, cells)
    elif opts.spread and len((grid.meta.get("probe") or {}).get("seeds") or []) > 1:
        std = grid.grid_values.spread.get(opts.metric)
        view.spread = None if std is None else std[cells]
    if opts.baselines:
        view.baselines = baseline_rows(grid)
    return view


def head_views(grid: GridBundle, options: FigureOptions | None = None, *,
               diff: GridBundle | None = None, **changes) -> list[HeatmapView]:
    """A head grid's panels: one layer x head heatmap per position (``opts.position``: that
    one; ``opts.positions``: those, in that order), titled by the position, columns
    labelled by head number. Highlights name heads (``4:8,0:3``)."""
    opts = FigureOptions.of(options, **changes)
    heads = grid.heads
    if opts.position is not None and opts.positions is not None:
        raise UserError("--position", "cannot be combined with --positions", "pass one of them")
    chosen = [opts.position] if opts.position is not None else opts.positions
    names = select_positions(chosen, heads["positions"], where="--position" if
                             opts.position is not None else "--positions",
                             source=f"{grid.path}'s head-grid positions")
    n_heads = int(heads["n_heads"])
    labels = [str(h) for h in range(n_heads)]
    views = []
    for name in names:
        columns = [grid.positions[j] for j in grid.head_columns(name)]
        view = grid_view(grid, opts, diff=diff, positions=columns, highlights=(),
                         title=opts.title if len(names) == 1 and opts.title else name)
        view.positions = labels
        view.boxes = [resolve_highlight(h if isinstance(h, Highlight) else parse_highlight(h),
                                        view.layers, labels) for h in opts.highlights]
        views.append(view)
    return views


def _not_significant(grid, diff, cells) -> np.ndarray | None:
    from ..probe.compare import compare

    tests = compare(grid, diff)
    return None if tests is None else tests.not_significant()[cells]


def baseline_rows(grid, most: int = 8) -> list[tuple[str, float]]:
    """The grid's best baselines (name, AUC), best first; refuses a grid without any."""
    from ..bundle.grid import shown_baselines

    info = grid.meta.get("baselines") or {}
    auc = grid.tensor("baseline_auc") if "baseline_auc" in grid.tensor_names else np.zeros(0)
    rows = [(shown, float(auc[k])) for k, shown in shown_baselines(info.get("names", []), auc)]
    if not rows:
        absent = info.get("absent")
        reasons = sorted(set(absent.values())) if isinstance(absent, dict) else [absent]
        raise UserError("--baselines", f"{grid.path} holds no baselines ("
                        + "; ".join(r for r in reasons if r) + ")",
                        "probe a run made with baselines, or leave --baselines out")
    return sorted(rows, key=lambda r: -r[1])[:most]


def _cells(grid: GridBundle, metric: str, layers: list[int], positions: list[str]) -> np.ndarray:
    rows = [grid.layers.index(x) for x in layers]
    cols = [grid.positions.index(p) for p in positions]
    return grid.grid_values.metric(metric)[np.ix_(rows, cols)]


def _diff_range(values: np.ndarray, vmin, vmax) -> tuple[float, float]:
    """Symmetric limits around 0 unless the user set them."""
    finite = np.abs(values[np.isfinite(values)])
    lim = max(float(finite.max()) if finite.size else 0.0, 0.01)
    return (-lim if vmin is None else float(vmin)), (lim if vmax is None else float(vmax))
