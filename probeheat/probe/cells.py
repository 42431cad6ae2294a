"""Fitting the probes of one layer: one cell per position, on one train/test split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .metrics import delong_ci, roc_auc
from .settings import MIN_TEST_PER_CLASS, MIN_TRAIN_PER_CLASS, ProbeSettings
from .solver import LogisticModel, prepare, solve_many, solver_dtype, threads_for
from .targets import class_names

CONSTANT = ("degenerate: the features are the same for every training example (one token "
            "at this layer, e.g. layer 0 of a fixed prompt token): nothing to probe")


@dataclass
class LayerFit:
    """Probes of one layer, one per position, on one train/test split.

    Arrays are indexed by position; ``scores[p, j]`` is the log-odds of label 1 for
    ``test_rows[j]``, rounded to float32 (NaN where that example lacks the position or the
    cell was skipped); the metrics are computed from these rounded scores.
    ``reasons[p]`` says why cell p has no probe.
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


def fit_layer(X: np.ndarray, mask: np.ndarray, y: np.ndarray, train_rows: np.ndarray,
              test_rows: np.ndarray, settings: ProbeSettings | None = None) -> LayerFit:
    """Fit one probe per position of a layer: X [n, P, d], mask [n, P], y [n] in {0, 1}.

    Each cell trains on the rows of ``train_rows`` that have the position and is scored
    on those of ``test_rows``. Every cell starts cold (zero weights, intercept at the
    class log-odds): starting from the neighbouring layer's solution was measured to cost
    Newton iterations, not save them.
    """
    settings = settings or ProbeSettings()
    n, P, _ = X.shape
    y = np.asarray(y).astype(np.int64)
    out = _empty_layer(P, len(test_rows))
    for p in range(P):
        tr = train_rows[mask[train_rows, p]]
        te_keep = mask[test_rows, p]
        te = test_rows[te_keep]
        out.n_train[p], out.n_test[p], out.n_test_pos[p] = tr.size, te.size, int(y[te].sum())
        reason = cell_problem(y[tr], y[te], class_names(settings.target))
        Xtr, Xte = X[tr, p, :], X[te, p, :]
        if reason is None and not (np.isfinite(Xtr).all() and np.isfinite(Xte).all()):
            reason = "hidden states contain NaN or inf (overflow in the run's dtype?)"
        if reason is None and not np.ptp(Xtr, axis=0).any():
            reason = CONSTANT
        if reason is not None:
            out.reasons[p] = reason
            continue
        try:
            fit, s = _fit_cell(Xtr, y[tr], Xte, settings)
        except torch.linalg.LinAlgError as exc:  # never seen; a cell must not kill a grid
            out.reasons[p] = f"solver failed: {exc}"
            continue
        out.scores[p, te_keep] = s
        out.n_iter[p], out.converged[p] = fit.n_iter, fit.converged
        out.auc[p] = roc_auc(y[te], s)
        out.auc_lo[p], out.auc_hi[p] = delong_ci(y[te], s, settings.level)
        out.accuracy[p] = float(np.mean((s > 0) == (y[te] == 1)))
    return out


def _fit_cell(Xtr, ytr, Xte, settings: ProbeSettings):
    (fit, s), = fit_cell_many(Xtr, [ytr], Xte, settings)
    return fit, s


def fit_cell_many(Xtr, ytrs, Xte, settings: ProbeSettings) -> list[tuple]:
    """[(fit, test scores)] of one cell's rows for each training label vector: the
    standardisation and the Gram matrix are shared (the permutation null's K refits)."""
    with threads_for(Xtr.size):
        Xs, mean, scale = prepare(Xtr, settings.standardize, solver_dtype(settings.standardize))
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
        Xs, mean, scale = prepare(Xtr, settings.standardize, solver_dtype(settings.standardize))
        fit, = solve_many(Xs, [torch.as_tensor(ytr, dtype=torch.float64)], settings.C,
                          settings.tol, settings.max_iter)
    return LogisticModel(fit.w.numpy(), fit.b, mean, scale)


def _empty_layer(P: int, k: int) -> LayerFit:
    nan = np.full(P, np.nan)
    zeros = np.zeros(P, dtype=np.int64)
    return LayerFit(np.full((P, k), np.nan), nan.copy(), nan.copy(), nan.copy(), nan.copy(),
                    zeros.copy(), zeros.copy(), zeros.copy(), zeros.copy(),
                    np.zeros(P, dtype=bool))
