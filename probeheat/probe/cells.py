"""Fitting the probes of one layer: one cell per position, on one train/test split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .cellstats import calibrate_cells, empty_cal, oof_scores, score_cells
from .settings import MIN_TEST_PER_CLASS, MIN_TRAIN_PER_CLASS, ProbeSettings
from .solver import LogisticModel, prepare, solve_many, solver_dtype, threads_for
from .targets import class_names

CONSTANT = ("degenerate: the features are the same for every training example (one token "
            "at this layer, e.g. layer 0 of a fixed prompt token): nothing to probe")


@dataclass
class LayerFit:
    """Probes of one layer, one per column (a position; a position's head in head grids),
    on one train/test split.

    Arrays are indexed by column; ``scores[p, j]`` is the probe's score (log-odds of label
    1 for the logistic families) for ``test_rows[j]``, rounded to float32 (NaN where that
    example lacks the position or the cell was skipped); the metrics are computed from
    these rounded scores. ``reasons[p]`` says why cell p has no probe. ``cal`` holds the
    calibration values [P] per key of cellstats.CAL_KEYS and ``reliability`` [P, 3, bins]
    (mean probability, error rate, count per bin), both NaN where not computed.
    """

    scores: np.ndarray
    auc: np.ndarray
    auc_lo: np.ndarray
    auc_hi: np.ndarray
    accuracy: np.ndarray
    n_train: np.ndarray
    n_test: np.ndarray
    n_test_pos: np.ndarray
    n_iter: np.ndarray
    converged: np.ndarray
    reasons: dict[int, str] = field(default_factory=dict)
    cal: dict[str, np.ndarray] = field(default_factory=dict)
    reliability: np.ndarray | None = None


def cell_problem(y_train: np.ndarray, y_test: np.ndarray,
                 classes: tuple[str, str] = ("incorrect", "correct")) -> str | None:
    """Why a cell with these labels cannot be probed, or None when it can; ``classes``
    names label 1 and label 0 in the reason."""
    tr_pos, te_pos = int(y_train.sum()), int(y_test.sum())
    tr_neg, te_neg = y_train.size - tr_pos, y_test.size - te_pos
    pos, neg = classes
    if min(tr_pos, tr_neg) < MIN_TRAIN_PER_CLASS:
        return (f"too few training examples per class ({tr_pos} {pos}, {tr_neg} {neg};"
                f" need {MIN_TRAIN_PER_CLASS} of each)")
    if min(te_pos, te_neg) < MIN_TEST_PER_CLASS:
        return (f"too few test examples per class ({te_pos} {pos}, {te_neg} {neg};"
                f" need {MIN_TEST_PER_CLASS} of each)")
    return None


def feature_problem(Xtr: np.ndarray, Xte: np.ndarray) -> str | None:
    """Why features cannot be probed (non-finite, constant), or None."""
    if not (np.isfinite(Xtr).all() and np.isfinite(Xte).all()):
        return "hidden states contain NaN or inf (overflow in the run's dtype?)"
    if not np.ptp(Xtr, axis=0).any():
        return CONSTANT
    return None


def fit_layer(X: np.ndarray, mask: np.ndarray, y: np.ndarray, train_rows: np.ndarray,
              test_rows: np.ndarray, settings: ProbeSettings | None = None,
              seed: int | None = 0) -> LayerFit:
    """Fit one probe per position of a layer: X [n, P, d], mask [n, P], y [n] in {0, 1}.

    Each cell trains on the rows of ``train_rows`` that have the position and is scored
    on those of ``test_rows``. Every cell starts cold (zero weights, intercept at the
    class log-odds): starting from the neighbouring layer's solution was measured to cost
    Newton iterations, not save them. ``seed`` (the split's) seeds what the family and
    the calibration draw (logistic-cv's inner folds, Platt's folds, the bootstrap).
    """
    settings = settings or ProbeSettings()
    n, P, _ = X.shape
    y = np.asarray(y).astype(np.int64)
    out = _empty_layer(P, len(test_rows), settings.calibration)
    for p in range(P):
        tr = train_rows[mask[train_rows, p]]
        te_keep = mask[test_rows, p]
        te = test_rows[te_keep]
        out.n_train[p], out.n_test[p], out.n_test_pos[p] = tr.size, te.size, int(y[te].sum())
        Xtr, Xte = X[tr, p, :], X[te, p, :]
        reason = cell_problem(y[tr], y[te], class_names(settings.target)) \
            or feature_problem(Xtr, Xte)
        if reason is not None:
            out.reasons[p] = reason
            continue
        try:
            fit, s, train_scores = fit_cell(Xtr, y[tr], Xte, settings, seed or 0)
        except torch.linalg.LinAlgError as exc:  # never seen; a cell must not kill a grid
            out.reasons[p] = f"solver failed: {exc}"
            continue
        out.scores[p, te_keep] = s
        out.n_iter[p], out.converged[p] = fit.n_iter, fit.converged
        score_cells(out, [p], s[None], y[te], settings.level)
        if settings.calibration:
            calibrate_cells(out, [p], (s[None], y[te]),
                            None if train_scores is None else [(train_scores, y[tr])],
                            probabilities=train_scores is None, level=settings.level,
                            seed=[seed or 0, p])
    return out


def fit_cell(Xtr, ytr, Xte, settings: ProbeSettings, seed: int = 0):
    """One cell of ``settings.family``: (fit with n_iter and converged, test scores rounded
    to float32, out-of-fold training scores for Platt scaling; None when the family's
    scores are log-odds or ``settings.calibration`` is off)."""
    if settings.family == "logistic":
        fit, s = _fit_cell(Xtr, ytr, Xte, settings)
        return fit, s, None
    from .families import fit_family

    fit = fit_family(settings.family, Xtr, ytr, settings, seed=seed)
    s = fit.decision_function(Xte).astype(np.float32).astype(np.float64)
    if fit.probabilities or not settings.calibration:
        return fit, s, None
    return fit, s, oof_scores(settings.family, Xtr, ytr, settings, seed)


def _fit_cell(Xtr, ytr, Xte, settings: ProbeSettings):
    (fit, s), = fit_cell_many(Xtr, [ytr], Xte, settings)
    return fit, s


def fit_cell_many(Xtr, ytrs, Xte, settings: ProbeSettings) -> list[tuple]:
    """[(fit, test scores)] of one cell's rows for each training label vector: the
    standardisation and the Gram matrix are shared (the permutation null's K refits)."""
    with threads_for(Xtr.size):
        Xs, mean, scale = prepare(Xtr, settings.standardize, solver_dtype(settings.standardize),
                                  settings.device)
        fits = solve_many(Xs, [torch.as_tensor(y, dtype=torch.float64) for y in ytrs],
                          settings.C, settings.tol, settings.max_iter)
        out = []
        for fit in fits:
            model = LogisticModel(fit.w.numpy(), fit.b, mean, scale)
            # float32 like the grid stores them, so stored scores reproduce every metric
            out.append((fit, model.decision_function(Xte).astype(np.float32).astype(np.float64)))
    return out


def fit_cell_model(Xtr: np.ndarray, ytr: np.ndarray, settings: ProbeSettings) -> LogisticModel:
    """One cell's probe as a model that scores new rows (what `select` and `steer` reuse)."""
    with threads_for(Xtr.size):
        Xs, mean, scale = prepare(Xtr, settings.standardize, solver_dtype(settings.standardize),
                                  settings.device)
        fit, = solve_many(Xs, [torch.as_tensor(ytr, dtype=torch.float64)], settings.C,
                          settings.tol, settings.max_iter)
    return LogisticModel(fit.w.numpy(), fit.b, mean, scale)


def _empty_layer(P: int, k: int, calibration: bool = False) -> LayerFit:
    nan = np.full(P, np.nan)
    zeros = np.zeros(P, dtype=np.int64)
    out = LayerFit(np.full((P, k), np.nan), nan.copy(), nan.copy(), nan.copy(), nan.copy(),
                   zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(),
                   np.zeros(P, dtype=bool))
    if calibration:
        out.cal, out.reliability = empty_cal(P)
    return out
