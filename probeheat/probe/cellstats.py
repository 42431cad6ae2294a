"""What each fitted cell is worth on its test split: AUC with its DeLong interval, accuracy,
and calibration (expected calibration error, the reliability curve, recall at 1% and 5%
false-positive rate with stratified bootstrap intervals; probe/calibration.py).

The cells given together share their test rows (one position's cells of a layer: one
cell of a resid grid, every head of a head grid), so the bootstrap resamples are drawn
once for them. Probabilities come from the TRAINING split only: sigmoid of the score for
families whose scores are log-odds (logistic, logistic-cv); Platt scaling otherwise,
fitted on out-of-fold training scores (:func:`oof_scores`: 5-fold, stratified, seeded by
the split's seed), because a mass-mean or LDA probe separates its own training rows more
than new ones and Platt scaling on those in-sample scores would be overconfident by
construction.
"""

from __future__ import annotations

import numpy as np

from ..bundle.grid import LOWER_IS_BETTER
from .calibration import BINS, N_BOOT, ece, ece_ci_many, probability_map, recall_at_fprs_many
from .metrics import delong_ci, roc_auc

# grid metrics (FORMAT.md): name -> false-positive rate
RECALLS = {"recall_at_fpr1": 0.01, "recall_at_fpr5": 0.05}
CAL_METRICS = ("ece", *RECALLS)
CAL_KEYS = tuple(f"{name}{end}" for name in CAL_METRICS for end in ("", "_lo", "_hi"))
OOF_FOLDS = 5


def empty_cal(P: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """NaN calibration values [P] per key, and a NaN reliability curve [P, 3, BINS]."""
    return {key: np.full(P, np.nan) for key in CAL_KEYS}, np.full((P, 3, BINS), np.nan)


def score_cells(out, cols, scores: np.ndarray, y_test: np.ndarray, level: float) -> None:
    """AUC, DeLong interval and accuracy (score > 0 means label 1) of cells ``cols``:
    scores [C, m] of the same m test rows, labels y_test [m]."""
    for c, s in zip(cols, scores, strict=True):
        out.auc[c] = roc_auc(y_test, s)
        out.auc_lo[c], out.auc_hi[c] = delong_ci(y_test, s, level)
        out.accuracy[c] = float(np.mean((s > 0) == (y_test == 1)))


def calibrate_cells(out, cols, test: tuple, train: list | None, *, probabilities: bool,
                    level: float, seed) -> None:
    """ECE, reliability curve and recall at each FPR of cells ``cols`` into ``out.cal`` /
    ``out.reliability``. ``test`` = (scores [C, m], labels [m]); ``train`` = one (scores,
    labels) pair per cell for Platt scaling (unused, may be None, when ``probabilities``);
    ``seed`` seeds the shared bootstrap."""
    scores, y = test
    probs = np.empty(np.shape(scores))
    for k, c in enumerate(cols):
        mapping = probability_map(probabilities, *(train[k] if train else (None, None)))
        probs[k] = mapping(scores[k])
        value, curve = ece(probs[k], y, BINS)
        out.cal["ece"][c] = value
        out.reliability[c] = np.stack([curve.mean_prob, curve.observed,
                                       curve.count.astype(np.float64)])
    out.cal["ece_lo"][list(cols)], out.cal["ece_hi"][list(cols)] = \
        ece_ci_many(probs, y, level, N_BOOT, seed, BINS)
    recall, lo, hi = recall_at_fprs_many(scores, y, tuple(RECALLS.values()), level, N_BOOT,
                                         seed)
    for f, name in enumerate(RECALLS):
        for key, values in ((name, recall), (f"{name}_lo", lo), (f"{name}_hi", hi)):
            out.cal[key][list(cols)] = values[:, f]


def oof_scores(family: str, Xtr: np.ndarray, ytr: np.ndarray, settings, seed: int
               ) -> np.ndarray:
    """Out-of-fold scores of the training rows: each of 5 stratified folds (seeded) scored
    by the family's probe fitted on the other four, rounded to float32 like stored scores."""
    from .families import fit_family, stratified_folds

    folds = stratified_folds(ytr, OOF_FOLDS, seed)
    out = np.empty(ytr.size)
    for fold in range(OOF_FOLDS):
        held = folds == fold
        fit = fit_family(family, Xtr[~held], ytr[~held], settings, seed=seed)
        out[held] = fit.decision_function(Xtr[held])
    return out.astype(np.float32).astype(np.float64)


def calibration_meta(probabilities_by: str) -> dict:
    """grid.json's ``calibration`` object: what the calibration metrics are."""
    return {
        "metrics": list(CAL_METRICS), "lower_is_better": list(LOWER_IS_BETTER), "bins": BINS,
        "fprs": dict(RECALLS), "n_boot": N_BOOT,
        "probabilities": probabilities_by,
        "ece": "expected calibration error of the test rows' probabilities over 10 equal-"
               "width bins of [0, 1] (sum of count / N x |mean probability - error rate|)",
        "recall": "recall of label 1 at a threshold on the test negatives' scores keeping "
                  "the false-positive rate at most 1% / 5% (probe/calibration.py)",
        "interval": "ece_lo/_hi and recall_*_lo/_hi: stratified percentile bootstrap, "
                    "1000 resamples (the same ones for ECE and recall) "
                    "drawn once per split and position (shared by its layers and heads), "
                    "rng numpy default_rng([split seed, position index]); per seed, bounds "
                    "averaged over seeds",
        "reliability": "reliability_* tensors [L, P, 10]: the first seed's test split",
    }


def probabilities_by(family_probabilities: bool) -> str:
    if family_probabilities:
        return "sigmoid of the probe's log-odds"
    return ("Platt scaling fitted on 5-fold out-of-fold scores of the training split "
            "(probe/cellstats.py); test labels never enter it")
