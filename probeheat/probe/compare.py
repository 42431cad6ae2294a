"""Grid A against grid B, cell by cell, with the test a reviewer asks for.

When both grids score the same examples (the same answers, from one run or from a run
made with --answers-from the other, and the same test rows and labels of the first seed:
another probe family, site, setting or exact-answer rule), each cell's difference gets a
paired DeLong test; otherwise (other runs) an unpaired one. p-values are corrected across
the compared cells (Benjamini-Hochberg by default). The viewer's diff mode and `export
--diff` mark the cells whose corrected p is 0.05 or more as not significant. numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .metrics import adjust_p, delong_paired, delong_unpaired

ALPHA = 0.05


@dataclass
class Comparison:
    delta: np.ndarray  # [L_a, P_a]: A - B where both have the cell, else NaN
    p: np.ndarray
    q: np.ndarray
    paired: bool
    correction: str

    def not_significant(self) -> np.ndarray:
        """Cells with a difference whose corrected p is at least 0.05."""
        return np.isfinite(self.delta) & ~(self.q < ALPHA)


def _cell_data(grid, row: int, col: int):
    rows = grid.tensor("test_rows")[0]
    scores = grid.tensor("scores")[0, row, col, :rows.size].astype(np.float64)
    keep = (rows >= 0) & np.isfinite(scores)
    labels = grid.tensor("labels").astype(np.int64)
    return rows[keep], scores[keep], labels[rows[keep]]


def other_models(a, b) -> str | None:
    """A note when grids A and B probe different models (or revisions of one): their
    difference then compares models, not positions or settings of one model."""
    ma, mb = a.meta.get("model") or {}, b.meta.get("model") or {}
    key = ("model_id", "revision")
    if not ma or not mb or all(ma.get(k) == mb.get(k) for k in key):
        return None
    def name(m):
        return m.get("model_id") or "?"
    if name(ma) == name(mb):
        return f"A and B probe two revisions of {name(ma)}: the difference compares them"
    return f"A probes {name(ma)}, B probes {name(mb)}: the difference compares two models"


def same_answers(ra: dict, rb: dict) -> bool:
    """The two grids' runs hold the same answers: one run, or a run made with
    --answers-from the other (or both from one source): the study's and the symmetric
    exact-answer rule on the same answers, say."""
    ha, hb = ra.get("content_hash"), rb.get("content_hash")
    if not ha or not hb:
        return False
    fa, fb = ra.get("answers_from"), rb.get("answers_from")
    return ha == hb or fa == hb or fb == ha or (fa is not None and fa == fb)


def same_examples(a, b) -> bool:
    """Paired when both grids' runs hold the same answers and their first splits test the
    same rows with the same labels."""
    if not same_answers(a.meta.get("run") or {}, b.meta.get("run") or {}):
        return False
    rows = a.tensor("test_rows")[0]
    if not np.array_equal(rows, b.tensor("test_rows")[0]):
        return False
    rows = rows[rows >= 0]
    return np.array_equal(a.tensor("labels")[rows], b.tensor("labels")[rows])


def compare(a, b, metric: str = "auc", correction: str = "bh") -> Comparison | None:
    """Cell-by-cell tests of A - B over A's cells; None when either grid kept no scores."""
    needed = {"scores", "test_rows", "labels"}
    if not (needed <= set(a.tensor_names) and needed <= set(b.tensor_names)):
        return None
    aligned = a.grid_values.align(b.grid_values)
    L, P = len(a.layers), len(a.positions)
    delta, p = np.full((L, P), np.nan), np.full((L, P), np.nan)
    if aligned is None:
        return Comparison(delta, p, p.copy(), False, correction)
    paired = same_examples(a, b)
    for ia, ib in zip(aligned.rows_a, aligned.rows_b, strict=True):
        for ja, jb in zip(aligned.cols_a, aligned.cols_b, strict=True):
            delta[ia, ja], p[ia, ja] = _test(a, b, (ia, ja), (ib, jb), paired)
    return Comparison(delta, p, adjust_p(p, correction), paired, correction)


def _test(a, b, cell_a, cell_b, paired: bool) -> tuple[float, float]:
    rows_a, sa, ya = _cell_data(a, *cell_a)
    rows_b, sb, yb = _cell_data(b, *cell_b)
    if paired:
        shared, ia, ib = np.intersect1d(rows_a, rows_b, return_indices=True)
        if shared.size == 0:
            return np.nan, np.nan
        diff, _, pval = delong_paired(ya[ia], sa[ia], sb[ib])
    else:
        diff, _, pval = delong_unpaired(ya, sa, yb, sb)
    return diff, pval
