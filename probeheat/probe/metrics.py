"""Metrics of a probe's test scores: exact ROC AUC, DeLong and bootstrap intervals.

Label 1 is the positive class throughout: an incorrect answer, as in the study. numpy only.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.r_[0, np.flatnonzero(xs[1:] != xs[:-1]) + 1]
    ends = np.r_[starts[1:], xs.size]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _auc_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray] | None:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    n1 = int(labels.sum())
    if n1 == 0 or n1 == labels.size:
        return None
    return labels, scores


def roc_auc(labels, scores) -> float:
    """Exact ROC AUC (Mann-Whitney U / n1 n0, ties count 1/2); NaN without both classes.

    Label 1 is the positive class (an incorrect answer in probeheat's grids).
    """
    checked = _auc_inputs(labels, scores)
    if checked is None:
        return float("nan")
    labels, scores = checked
    ranks = _midranks(scores)
    n1 = int(labels.sum())
    n0 = labels.size - n1
    return float((ranks[labels == 1].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def delong_ci(labels, scores, level: float = 0.95) -> tuple[float, float]:
    """DeLong's interval for the AUC (normal approximation, midranks handle ties).

    Uses the fast structural-component form of Sun & Xu (2014); clipped to [0, 1].
    (NaN, NaN) without both classes.
    """
    checked = _auc_inputs(labels, scores)
    if checked is None:
        return float("nan"), float("nan")
    labels, scores = checked
    pos, neg = scores[labels == 1], scores[labels == 0]
    n1, n0 = pos.size, neg.size
    rz = _midranks(np.r_[pos, neg])
    v10 = (rz[:n1] - _midranks(pos)) / n0
    v01 = 1.0 - (rz[n1:] - _midranks(neg)) / n1
    auc = float(v10.mean())
    var = (v10.var(ddof=1) / n1 if n1 > 1 else 0.0) + (v01.var(ddof=1) / n0 if n0 > 1 else 0.0)
    half = NormalDist().inv_cdf(0.5 + level / 2.0) * math.sqrt(max(var, 0.0))
    return max(0.0, auc - half), min(1.0, auc + half)


def bootstrap_ci(labels, scores, level: float = 0.95, n_boot: int = 1000,
                 seed: int = 0) -> tuple[float, float]:
    """Stratified percentile bootstrap interval for the AUC (classes resampled apart)."""
    checked = _auc_inputs(labels, scores)
    if checked is None:
        return float("nan"), float("nan")
    labels, scores = checked
    rng = np.random.default_rng(seed)
    pos, neg = scores[labels == 1], scores[labels == 0]
    both = np.r_[np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)]
    aucs = np.empty(n_boot)
    for i in range(n_boot):
        sample = np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)]
        aucs[i] = roc_auc(both, sample)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(aucs, [tail, 1.0 - tail])
    return float(lo), float(hi)


# --- paired comparisons ---------------------------------------------------------------------

def _components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's structural components (V10 over positives, V01 over negatives) of one score."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    n1, n0 = pos.size, neg.size
    rz = _midranks(np.r_[pos, neg])
    v10 = (rz[:n1] - _midranks(pos)) / n0
    v01 = 1.0 - (rz[n1:] - _midranks(neg)) / n1
    return v10, v01


def delong_paired(labels, scores_a, scores_b) -> tuple[float, float, float]:
    """(AUC_a - AUC_b, its standard error, two-sided p) for two scores of the SAME examples.

    DeLong, DeLong & Clarke-Pearson (1988): the covariance of the two AUCs comes from the
    structural components of both scores on the same positives and negatives. NaN without
    both classes (or with fewer than 2 of each).
    """
    labels = np.asarray(labels).astype(np.int64).ravel()
    a, b = (np.asarray(s, dtype=np.float64).ravel() for s in (scores_a, scores_b))
    if not (labels.shape == a.shape == b.shape):
        raise ValueError("labels and both scores need the same shape")
    n1 = int(labels.sum())
    n0 = labels.size - n1
    if min(n1, n0) < 2 or np.isnan(a).any() or np.isnan(b).any():
        return float("nan"), float("nan"), float("nan")
    (a10, a01), (b10, b01) = _components(labels, a), _components(labels, b)
    diff = float(a10.mean() - b10.mean())
    s10 = np.cov(np.vstack([a10, b10]), ddof=1)
    s01 = np.cov(np.vstack([a01, b01]), ddof=1)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / n1 + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n0
    return diff, *_two_sided(diff, var)


def delong_unpaired(labels_a, scores_a, labels_b, scores_b) -> tuple[float, float, float]:
    """(AUC_a - AUC_b, standard error, two-sided p) for two AUCs on DIFFERENT examples."""
    out = []
    for labels, scores in ((labels_a, scores_a), (labels_b, scores_b)):
        labels = np.asarray(labels).astype(np.int64).ravel()
        scores = np.asarray(scores, dtype=np.float64).ravel()
        n1 = int(labels.sum())
        n0 = labels.size - n1
        if min(n1, n0) < 2:
            return float("nan"), float("nan"), float("nan")
        v10, v01 = _components(labels, scores)
        out.append((float(v10.mean()), v10.var(ddof=1) / n1 + v01.var(ddof=1) / n0))
    diff = out[0][0] - out[1][0]
    return diff, *_two_sided(diff, out[0][1] + out[1][1])


def _two_sided(diff: float, var: float) -> tuple[float, float]:
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        return 0.0, (1.0 if diff == 0.0 else 0.0)
    z = abs(diff) / se
    return se, float(2.0 * (1.0 - NormalDist().cdf(z)))


def adjust_p(p_values, method: str = "bh") -> np.ndarray:
    """Multiple-comparison correction over the finite entries of an array (NaN stays NaN).

    ``bh``: Benjamini-Hochberg false discovery rate (adjusted p, i.e. q-values);
    ``holm``: Holm's step-down family-wise error rate.
    """
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    flat = p.ravel()
    ok = np.flatnonzero(~np.isnan(flat))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(flat[ok], kind="mergesort")]
    ranked = flat[order]
    if method == "bh":
        adjusted = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    elif method == "holm":
        adjusted = np.maximum.accumulate(ranked * (m - np.arange(m)))
    else:
        raise ValueError(f"unknown correction {method!r}: use bh or holm")
    result = out.ravel()
    result[order] = np.minimum(adjusted, 1.0)
    return result.reshape(p.shape)


def wilson(k: int, n: int, z: float = NormalDist().inv_cdf(0.975)) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
