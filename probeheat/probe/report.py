"""What `probe` tells the user about a grid: the best cell against everything it must beat.

The comparison table has the study's shape: the best probe cell; each baseline; the
token-identity reference (the same position at layer 0); and the permutation null at the
best cell's position. Each row has its AUC, 95% interval, n, and a paired p-value against
the best cell on the test examples both have (paired DeLong; for the null, the share of
permutations at least as good, (1 + #{null >= AUC}) / (1 + K)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..bundle.grid import GridValues, shown_baselines
from .metrics import delong_paired


def layer0_auc(values: GridValues, position: str) -> float | None:
    """The AUC at layer 0 (the token embedding, no context) of a position, if probed."""
    if 0 not in values.layers or position not in values.positions:
        return None
    value = values.metric("auc")[values.layers.index(0), values.positions.index(position)]
    return None if math.isnan(value) else float(value)


def token_baseline(values: GridValues, position: str) -> str:
    """The same position's AUC at layer 0: what reading the token itself gives. A best
    cell is worth only what it adds to that."""
    value = layer0_auc(values, position)
    return "" if value is None else f" (layer 0, the token alone: {value:.3f})"


def best_cell_line(values: GridValues) -> str:
    best = values.best_cell("auc")
    if best is None:
        return "no cell could be fitted"
    return (f"best cell: layer {best.layer}, {best.position}, AUC {best.value:.3f}"
            + token_baseline(values, best.position))


@dataclass
class Row:
    name: str
    what: str
    auc: float
    lo: float | None
    hi: float | None
    n: int | None
    p: float | None  # against the best probe cell
    spread: float | None = None  # over seeds


def cell_scores(grid, row: int, col: int, seed: int = 0):
    rows = grid.tensor("test_rows")[seed]
    scores = grid.tensor("scores")[seed, row, col, :rows.size].astype(np.float64)
    return rows, scores


def comparison(grid) -> list[Row]:
    """The table's rows for a grid bundle (rows it cannot fill are left out)."""
    values = grid.grid_values
    best = values.best_cell("auc")
    if best is None:
        return []
    labels = grid.tensor("labels").astype(np.int64) if "labels" in grid.tensor_names else None
    rows, top = cell_scores(grid, best.row, best.col) if labels is not None else (None, None)
    lo, hi = (b[best.row, best.col] for b in values.intervals["auc"]) \
        if "auc" in values.intervals else (None, None)
    n = int(grid.counts()["n_test"][best.row, best.col]) if "n_test" in grid.counts() else None
    spread = values.spread.get("auc")
    out = [Row(f"probe L{best.layer} {best.position}", "best cell", best.value, lo, hi, n, None,
               None if spread is None else float(spread[best.row, best.col]))]
    if labels is None:
        return out
    out += _baseline_rows(grid, labels, rows, top)
    out += _reference_rows(grid, values, best, labels, (rows, top))
    return out


def paired_p(labels, rows, top, other) -> float | None:
    keep = np.isfinite(top) & np.isfinite(other) & (rows >= 0)
    if not keep.any():
        return None
    p = delong_paired(labels[rows[keep]], top[keep], other[keep])[2]
    return None if math.isnan(p) else p


def _baseline_rows(grid, labels, rows, top) -> list[Row]:
    info = grid.meta.get("baselines") or {}
    if "baseline_auc" not in grid.tensor_names:
        return []
    auc, lo, hi = (grid.tensor(f"baseline_auc{s}") for s in ("", "_lo", "_hi"))
    n = grid.tensor("baseline_n_test")[0]
    scores = grid.tensor("baseline_scores")[0].astype(np.float64)
    out = []
    names = info.get("names", [])
    for k, shown in shown_baselines(names, auc):
        p = paired_p(labels, rows, top, scores[k, :rows.size])
        out.append(Row(shown, info.get("descriptions", {}).get(names[k], ""), float(auc[k]),
                       float(lo[k]), float(hi[k]), int(n[k]), p))
    out.sort(key=lambda r: -r.auc)
    return out


def _reference_rows(grid, values: GridValues, best, labels, cell) -> list[Row]:
    rows, top = cell
    out = []
    if 0 in values.layers and best.layer != 0:
        r0 = values.layers.index(0)
        auc0 = values.metric("auc")[r0, best.col]
        if math.isfinite(auc0):
            _, scores0 = cell_scores(grid, r0, best.col)
            lo, hi = (b[r0, best.col] for b in values.intervals.get("auc", (None, None))) \
                if "auc" in values.intervals else (None, None)
            out.append(Row(f"layer 0 {best.position}", "token identity: the embedding, no "
                           "context", float(auc0), lo, hi, None,
                           paired_p(labels, rows, top, scores0)))
    if "perm_auc" in grid.tensor_names:
        null = grid.tensor("perm_auc")[best.col]
        if np.isfinite(null).any():
            null = null[np.isfinite(null)]
            p = (1 + int((null >= best.value).sum())) / (1 + null.size)
            out.append(Row(f"permuted labels L{int(grid.tensor('perm_layer')[best.col])}",
                           f"median of {null.size} refits (interval: 2.5-97.5%)",
                           float(np.median(null)), float(np.percentile(null, 2.5)),
                           float(np.percentile(null, 97.5)), None, p))
    return out


def _fmt(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.{digits}f}"


def table_lines(rows: list[Row]) -> list[str]:
    """The comparison as plain text (what `probe` prints)."""
    if not rows:
        return []
    width = max(len(r.name) for r in rows)
    lines = [f"{'':{width}}  AUC    95% CI         n     p vs best cell"]
    for r in rows:
        interval = f"[{_fmt(r.lo)}, {_fmt(r.hi)}]" if r.lo is not None else " " * 14
        n = f"{r.n:5d}" if r.n is not None else "     "
        p = "" if r.p is None else ("< 0.001" if r.p < 0.001 else f"{r.p:.3f}")
        spread = f" ±{r.spread:.3f}" if r.spread else ""
        lines.append(f"{r.name:{width}}  {r.auc:.3f}{spread}  {interval}  {n}  {p}")
    return lines


# --- several probe families on one run (`probe --probe a,b`) --------------------------------

@dataclass
class FamilyRow:
    family: str
    cell: str  # the family's best cell
    auc: float
    lo: float | None
    hi: float | None
    n: int | None
    p_best: float | None  # paired DeLong: this best cell against the reference's best cell
    p_same: float | None  # ... against the reference's probe at this same cell
    better: int  # cells significantly above the reference (paired DeLong, BH q < 0.05)
    worse: int
    compared: int  # cells both grids fitted
    ece: float | None = None  # at the best cell
    recall5: float | None = None


def family_rows(grids: dict[str, object], reference: str = "logistic") -> list[FamilyRow]:
    """One row per family's grid (all on the same run and splits): its best cell, and
    cell by cell against the reference family's grid (``reference``, else the first)."""
    from .compare import ALPHA, compare

    ref_name = reference if reference in grids else next(iter(grids))
    ref = grids[ref_name]
    ref_best = ref.grid_values.best_cell("auc")
    labels = ref.tensor("labels").astype(np.int64)
    out = []
    for name, grid in grids.items():
        values = grid.grid_values
        best = values.best_cell("auc")
        if best is None:
            continue
        rows, top = cell_scores(grid, best.row, best.col)
        p_best = p_same = None
        if name != ref_name and ref_best is not None:
            p_best = paired_p(labels, rows, top, cell_scores(ref, ref_best.row, ref_best.col)[1])
            p_same = paired_p(labels, rows, top, cell_scores(ref, best.row, best.col)[1])
        correction = (ref.meta.get("probe") or {}).get("correction", "bh")
        tests = compare(grid, ref, correction=correction) if name != ref_name else None
        fitted = np.isfinite(tests.delta) if tests is not None else np.zeros(0, bool)
        sig = fitted & (tests.q < ALPHA) if tests is not None else fitted
        lo, hi = (b[best.row, best.col] for b in values.intervals["auc"])
        at = {m: float(values.metric(m)[best.row, best.col]) for m in ("ece", "recall_at_fpr5")
              if m in values.metrics}
        out.append(FamilyRow(name, f"L{best.layer} {best.position}", best.value, float(lo),
                             float(hi), int(grid.counts()["n_test"][best.row, best.col]),
                             p_best, p_same,
                             int((sig & (tests.delta > 0)).sum()) if tests else 0,
                             int((sig & (tests.delta < 0)).sum()) if tests else 0,
                             int(fitted.sum()), at.get("ece"), at.get("recall_at_fpr5")))
    return out


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def family_lines(rows: list[FamilyRow], reference: str = "logistic") -> list[str]:
    """The family comparison as plain text (what `probe --probe a,b` prints)."""
    if not rows:
        return []
    ref = reference if any(r.family == reference for r in rows) else rows[0].family
    width = max(len(r.family) for r in rows)
    cell = max(len(r.cell) for r in rows)
    lines = [f"{'family':{width}}  {'best cell':{cell}}  AUC    95% CI          n    "
             f"p vs {ref} best  same cell  cells +/- (of n)  ECE    R@5%FPR"]
    for r in rows:
        counts = "—" if r.family == ref else f"{r.better}/{r.worse} (of {r.compared})"
        lines.append(f"{r.family:{width}}  {r.cell:{cell}}  {r.auc:.3f}  [{_fmt(r.lo)}, "
                     f"{_fmt(r.hi)}]  {r.n if r.n is not None else '':>4}  "
                     f"{_p(r.p_best):>13}  {_p(r.p_same):>9}  {counts:>16}  "
                     f"{_fmt(r.ece)}  {_fmt(r.recall5)}")
    lines.append(f"p: paired DeLong on the same test examples; cells +/-: cells significantly "
                 f"above / below {ref} (paired DeLong, BH q < 0.05)")
    return lines
