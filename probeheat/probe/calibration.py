"""Calibration of a cell's probe: probabilities, expected calibration error, recall at FPR.

Label 1 is the positive class (an incorrect answer); scores are higher for label 1.

* Probabilities, from the TRAINING split only. A family whose scores are log-odds
  (``FamilyFit.probabilities``: the logistic families) maps a score s to sigmoid(s). The
  others get Platt scaling: ``p = sigmoid(a s + b)`` fitted by maximum likelihood on the
  training split's scores and labels with Platt's (1999) smoothed targets
  ``t+ = (N+ + 1) / (N+ + 2)`` for label 1 and ``t- = 1 / (N- + 2)`` for label 0, which
  keep (a, b) finite when the training scores separate the classes (Newton's method with
  backtracking as in Lin, Lin & Weng 2007, on scores standardised internally). The
  interface enforces the split: :func:`platt` and :func:`probability_map` take training
  scores and labels and return a function of scores alone.
* ``ece(probs, labels, bins=10)``: M = 10 equal-width bins on [0, 1]; a probability p
  falls in bin ``min(floor(p * M), M - 1)`` (bin m holds m/M <= p < (m+1)/M, the last bin
  also holds p = 1). ECE = sum over non-empty bins of (count / N) * |mean predicted
  probability - observed error rate|, the observed error rate being the bin's fraction of
  label 1. The reliability curve gives, per bin, the mean predicted probability, the
  observed error rate (NaN for empty bins) and the count.
* ``recall_at_fpr(scores, labels, fpr)``: the threshold t is the (1 - fpr) quantile of
  the negatives' scores taken as an order statistic: with the negatives sorted in
  descending order, ``t = neg[k]`` (0-based) for ``k = floor(fpr * n0)``; a row is flagged
  when its score is strictly above t. At most k negatives lie strictly above neg[k], so
  the achieved false-positive rate is at most fpr (below it when fpr * n0 is not an
  integer or negatives tie at t), and t is the lowest threshold among the negatives'
  scores that keeps it so. Ties: a positive whose score equals t is not flagged, like a
  negative at t. Recall is the fraction of positives strictly above t. When fpr * n0 < 1
  the threshold is the highest negative score (no false positive allowed).
* Intervals: a stratified percentile bootstrap (positives and negatives resampled apart,
  ``numpy.random.default_rng(seed)``, 1000 resamples), :func:`stratified_bootstrap`; for
  ``roc_auc`` it reproduces ``metrics.bootstrap_ci`` exactly. Each resample recomputes the
  threshold on its own negatives. Grids use :func:`recall_at_fprs_many`, the same
  statistic and percentile interval for many cells at once (vectorised: every resample of
  every cell in a few array operations, no Python loop); its resamples are drawn in one
  block per class (``rng.integers(0, n1, (n_boot, n1))`` for the positives, then
  ``rng.integers(0, n0, (n_boot, n0))`` for the negatives) and shared by all the cells
  given together (the cells of one position have the same test rows), so its intervals
  have the same distribution as :func:`recall_at_fpr_ci`'s, not the same draws.

numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BINS = 10
FPRS = (0.01, 0.05)
N_BOOT = 1000


def sigmoid(scores) -> np.ndarray:
    """Probability of label 1 from log-odds (numerically stable)."""
    s = np.asarray(scores, dtype=np.float64)
    out = np.empty_like(s)
    pos = s >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-s[pos]))
    e = np.exp(s[~pos])
    out[~pos] = e / (1.0 + e)
    return out


@dataclass(frozen=True)
class PlattMap:
    """``p = sigmoid(a * score + b)``, fitted on a training split (see :func:`platt`)."""

    a: float
    b: float

    def __call__(self, scores) -> np.ndarray:
        return sigmoid(self.a * np.asarray(scores, dtype=np.float64) + self.b)


def _binary(labels, size: int | None = None) -> np.ndarray:
    labels = np.asarray(labels).ravel()
    if size is not None and labels.size != size:
        raise ValueError(f"{labels.size} labels for {size} scores")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    return labels.astype(np.int64)


def _finite(scores, what: str = "scores") -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if not np.isfinite(scores).all():
        raise ValueError(f"{what} contain NaN or inf")
    return scores


def platt(train_scores, train_labels) -> PlattMap:
    """Platt scaling fitted on the TRAINING split's scores and labels (see module)."""
    s = _finite(train_scores)
    y = _binary(train_labels, s.size)
    n1 = int(y.sum())
    n0 = y.size - n1
    t = np.where(y == 1, (n1 + 1.0) / (n1 + 2.0), 1.0 / (n0 + 2.0))
    mu, sd = float(s.mean()), float(s.std())
    if not sd > 0:  # constant scores carry no ranking: the smoothed base rate
        return PlattMap(0.0, float(math.log((n1 + 1.0) / (n0 + 1.0))))
    a, b = _platt_newton((s - mu) / sd, t, math.log((n1 + 1.0) / (n0 + 1.0)))
    return PlattMap(float(a / sd), float(b - a * mu / sd))


def _platt_loss(z: np.ndarray, t: np.ndarray, a: float, b: float) -> float:
    f = a * z + b
    # -[t log sigmoid(f) + (1 - t) log sigmoid(-f)] = logaddexp(0, f) - t f
    return float(np.sum(np.logaddexp(0.0, f) - t * f))


def _platt_newton(z: np.ndarray, t: np.ndarray, b0: float) -> tuple[float, float]:
    """Minimise the smoothed-target log loss over (a, b); z standardised scores."""
    a, b = 0.0, b0
    loss = _platt_loss(z, t, a, b)
    for _ in range(100):
        p = sigmoid(a * z + b)
        r, w = p - t, p * (1.0 - p)
        g = np.array([r @ z, r.sum()])
        H = np.array([[w @ (z * z), w @ z], [w @ z, w.sum()]]) + 1e-12 * np.eye(2)
        step = -np.linalg.solve(H, g)
        if abs(g @ step) <= 1e-14 * max(1.0, loss):  # squared Newton decrement
            break
        size = 1.0
        while True:
            new = _platt_loss(z, t, a + size * step[0], b + size * step[1])
            if new <= loss + 1e-4 * size * (g @ step):
                break
            size /= 2
            if size < 1e-10:  # no decrease left at float64 precision
                return a, b
        a, b, loss = a + size * step[0], b + size * step[1], new
    return a, b


def probability_map(probabilities: bool, train_scores, train_labels) -> Callable:
    """scores -> probabilities of label 1, fitted on the TRAINING split only.

    ``probabilities`` (``FamilyFit.probabilities``) True: scores are log-odds, the map is
    sigmoid and the training data go unused. False: Platt scaling on them.
    """
    if probabilities:
        return sigmoid
    return platt(train_scores, train_labels)


@dataclass
class Reliability:
    """The reliability curve of M bins: ``edges`` [M + 1]; per bin [M] the mean predicted
    probability and the observed error rate (NaN where the bin is empty) and the count."""

    edges: np.ndarray
    mean_prob: np.ndarray
    observed: np.ndarray
    count: np.ndarray


def ece(probs, labels, bins: int = BINS) -> tuple[float, Reliability]:
    """(expected calibration error, reliability curve) with ``bins`` equal-width bins."""
    p = _finite(probs, "probabilities")
    y = _binary(labels, p.size)
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    if p.size == 0:
        raise ValueError("no probabilities")
    idx = np.minimum(np.floor(p * bins).astype(np.int64), bins - 1)
    count = np.bincount(idx, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_prob = np.bincount(idx, weights=p, minlength=bins) / count
        observed = np.bincount(idx, weights=y, minlength=bins) / count
    full = count > 0
    value = float(np.sum(count[full] / p.size * np.abs(mean_prob[full] - observed[full])))
    return value, Reliability(np.linspace(0.0, 1.0, bins + 1), mean_prob, observed, count)


def _check_fpr(fpr: float) -> None:
    if not 0.0 < fpr < 1.0:
        raise ValueError(f"fpr must lie strictly between 0 and 1; got {fpr}")


def threshold_at_fpr(neg_scores, fpr: float) -> float:
    """The negatives' (1 - fpr) quantile as an order statistic (see module): flag > it."""
    _check_fpr(fpr)
    neg = np.sort(_finite(neg_scores))[::-1]
    if neg.size == 0:
        raise ValueError("no negative scores")
    # the 1e-9 guards fpr * n0 landing a rounding error below an integer (0.07 * 100)
    k = min(int(math.floor(fpr * neg.size + 1e-9)), neg.size - 1)
    return float(neg[k])


def recall_at_fpr(scores, labels, fpr: float) -> float:
    """Recall (true-positive rate of label 1) at false-positive rate at most ``fpr``, the
    threshold taken on these rows' negatives; NaN without both classes."""
    s = _finite(scores)
    y = _binary(labels, s.size)
    _check_fpr(fpr)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    return float(np.mean(pos > threshold_at_fpr(neg, fpr)))


def stratified_bootstrap(statistic: Callable, labels, scores, level: float = 0.95,
                         n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of ``statistic(labels, scores)`` over stratified resamples.

    Each resample draws the positives and the negatives apart, with replacement, in the
    order ``rng.choice(pos)`` then ``rng.choice(neg)`` from ``default_rng(seed)`` (as
    metrics.bootstrap_ci does); the resample's labels are its positives' then its
    negatives'. (NaN, NaN) without both classes.
    """
    s = _finite(scores)
    y = _binary(labels, s.size)
    pos, neg = s[y == 1], s[y == 0]
    if pos.size == 0 or neg.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    both = np.r_[np.ones(pos.size, np.int64), np.zeros(neg.size, np.int64)]
    stats = np.empty(n_boot)
    for i in range(n_boot):
        stats[i] = statistic(both, np.r_[rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [tail, 1.0 - tail])
    return float(lo), float(hi)


def recall_at_fpr_ci(scores, labels, fpr: float, level: float = 0.95, n_boot: int = N_BOOT,
                     seed: int = 0) -> tuple[float, float]:
    """Stratified bootstrap interval of :func:`recall_at_fpr` (threshold re-chosen on each
    resample's negatives)."""
    _check_fpr(fpr)
    return stratified_bootstrap(lambda y, s: recall_at_fpr(s, y, fpr), labels, scores,
                                level, n_boot, seed)


@dataclass
class CellCalibration:
    """One cell's calibration on its test split (probabilities mapped on its training split).

    ``probs`` are the test rows' probabilities of label 1; ``platt`` is the fitted map, or
    None where the family's scores are log-odds; ``recall[fpr]`` and ``recall_ci[fpr]``
    for each requested false-positive rate.
    """

    probs: np.ndarray
    ece: float
    curve: Reliability
    recall: dict[float, float]
    recall_ci: dict[float, tuple[float, float]]
    platt: PlattMap | None


def calibrate_cell(train: tuple, test: tuple, *, probabilities: bool, bins: int = BINS,
                   fprs: tuple[float, ...] = FPRS, level: float = 0.95,
                   seed: int = 0) -> CellCalibration:
    """Everything above for one cell: ``train`` and ``test`` are (scores, labels) pairs.

    The probability map sees only ``train``; ``test`` labels enter ECE and recall only.
    Recall uses the raw test scores (the threshold is rank-based, so a monotone map to
    probabilities would change nothing but the tie structure).
    """
    mapping = probability_map(probabilities, *train)
    test_scores, test_labels = _finite(test[0]), _binary(test[1])
    probs = mapping(test_scores)
    value, curve = ece(probs, test_labels, bins)
    recall = {f: recall_at_fpr(test_scores, test_labels, f) for f in fprs}
    ci = {f: recall_at_fpr_ci(test_scores, test_labels, f, level, seed=seed) for f in fprs}
    return CellCalibration(probs, value, curve, recall, ci,
                           None if probabilities else mapping)


def recall_at_fprs_many(scores, labels, fprs: tuple[float, ...] = FPRS, level: float = 0.95,
                        n_boot: int = N_BOOT, seed=0) -> tuple[np.ndarray, np.ndarray,
                                                                np.ndarray]:
    """Recall at each FPR with its stratified bootstrap interval, for C cells scored on the
    same rows: ``scores`` [C, m], ``labels`` [m]. Returns (recall, lo, hi), each [C, F].

    The estimate is :func:`recall_at_fpr` of each cell; the interval is the percentile
    interval of the same statistic over ``n_boot`` stratified resamples (threshold re-chosen
    on each resample's negatives), drawn once for all cells (see module). ``seed`` is
    anything ``numpy.random.default_rng`` takes. NaN without both classes.
    """
    S = np.asarray(scores, dtype=np.float64)
    S = S.reshape(1, -1) if S.ndim == 1 else S
    y = _binary(labels, S.shape[1])
    for fpr in fprs:
        _check_fpr(fpr)
    if not np.isfinite(S).all():
        raise ValueError("scores contain NaN or inf")
    C, F = S.shape[0], len(fprs)
    pos, neg = S[:, y == 1], S[:, y == 0]
    if pos.shape[1] == 0 or neg.shape[1] == 0:
        nan = np.full((C, F), np.nan)
        return nan, nan.copy(), nan.copy()
    ip, ineg = stratified_indices(pos.shape[1], neg.shape[1], n_boot, seed)
    estimate = _recalls(pos[:, None, :], neg[:, None, :], fprs)[:, 0]  # [C, F]
    boot = _recalls(pos[:, ip], neg[:, ineg], fprs)  # [C, n_boot, F]
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail], axis=1)
    return estimate, lo, hi


def stratified_indices(n_pos: int, n_neg: int, n_boot: int, seed
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The resamples shared by a position's cells: [n_boot, n_pos] indices into the
    positives and [n_boot, n_neg] into the negatives, from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_pos, (n_boot, n_pos)), rng.integers(0, n_neg, (n_boot, n_neg))


def ece_ci_many(probs, labels, level: float = 0.95, n_boot: int = N_BOOT, seed=0,
                bins: int = BINS) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of each cell's ECE over the stratified resamples of
    :func:`stratified_indices` (the same ones recall's interval uses for that seed):
    ``probs`` [C, m] of the same m rows, ``labels`` [m]; returns (lo, hi), each [C].
    Each resample's ECE is :func:`ece` of its rows (positives' then negatives')."""
    P = np.asarray(probs, dtype=np.float64)
    P = P.reshape(1, -1) if P.ndim == 1 else P
    y = _binary(labels, P.shape[1])
    pos, neg = P[:, y == 1], P[:, y == 0]
    C = P.shape[0]
    if pos.shape[1] == 0 or neg.shape[1] == 0:
        return np.full(C, np.nan), np.full(C, np.nan)
    ip, ineg = stratified_indices(pos.shape[1], neg.shape[1], n_boot, seed)
    p = np.concatenate([pos[:, ip], neg[:, ineg]], axis=-1)  # [C, R, m]
    t = np.r_[np.ones(ip.shape[1]), np.zeros(ineg.shape[1])]
    idx = np.minimum(np.floor(p * bins).astype(np.int64), bins - 1)
    key = (np.arange(C * n_boot).reshape(C, n_boot, 1) * bins + idx).ravel()
    size = C * n_boot * bins
    sum_p = np.bincount(key, weights=p.ravel(), minlength=size).reshape(C, n_boot, bins)
    sum_y = np.bincount(key, weights=np.broadcast_to(t, p.shape).ravel(),
                        minlength=size).reshape(C, n_boot, bins)
    boot = np.abs(sum_p - sum_y).sum(-1) / p.shape[-1]  # = sum count/N |mean p - rate|
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(boot, [tail, 1.0 - tail], axis=1)
    return lo, hi


def _recalls(pos: np.ndarray, neg: np.ndarray, fprs) -> np.ndarray:
    """[C, R, F] recalls of positives pos [C, R, n1] above the threshold_at_fpr of each
    row's negatives neg [C, R, n0]."""
    ordered = -np.sort(-neg, axis=-1)  # descending
    n0 = neg.shape[-1]
    out = np.empty(pos.shape[:2] + (len(fprs),))
    for f, fpr in enumerate(fprs):
        k = min(int(math.floor(fpr * n0 + 1e-9)), n0 - 1)
        out[..., f] = (pos > ordered[..., k:k + 1]).mean(-1)
    return out
