"""Probe families: the default logistic probe and three alternatives, behind one entry point.

    fit = fit_family("mass-mean", X_train, y_train, settings)   # X [n, d], y [n] in {0, 1}
    scores = fit.decision_function(X_test)                     # higher = label 1 (wrong)

Every family returns a :class:`FamilyFit`: a direction ``w`` and an ``intercept`` acting on
standardised features ``(X - mean) / scale`` exactly like ``LogisticModel.coef`` (``mean``
and ``scale`` are the training statistics of ``solver.standardizer``, or None when
``settings.standardize`` is False, e.g. the paper preset), so ``score = Xs . w +
intercept``. ``probabilities`` is True only where the score is a log-odds (the logistic
families); for the others, calibration.py maps scores to probabilities (Platt scaling on
the training split). Label 1 is an incorrect answer throughout.

FAMILIES (the registry; ``check_family`` turns an unknown name into a UserError):

* ``logistic``: the exact L2 solver, ``solver.fit_logistic(X, y, C=settings.C,
  standardize=settings.standardize, tol=settings.tol, max_iter=settings.max_iter)``.
* ``mass-mean`` (Marks & Tegmark 2023, "The Geometry of Truth"): ``w = mu1 - mu0``, the
  difference of the class means of the (standardised) training features;
  ``intercept = -(mu1 + mu0) . w / 2`` puts the threshold half way between the projected
  class means. With ``standardize=False`` this is the paper's probe on raw activations;
  by default the features are standardised first (so ``w`` is, in raw coordinates, the
  difference of means divided by each feature's variance).
* ``mass-mean-iid``: the same difference whitened by the class-pooled covariance, an LDA
  direction: ``w = (S + lam I)^-1 (mu1 - mu0)`` with
  ``S = sum_i (x_i - mu_{y_i})(x_i - mu_{y_i})^T / (n - 2)`` (within-class scatter,
  unbiased) and the ridge ``lam = max(rho / (1 - rho), RIDGE) * trace(S) / d``: rho is the
  Ledoit-Wolf (2004) shrinkage intensity of the within-class-centred rows towards
  ``trace(S) / d * I`` (:func:`ledoit_wolf`, sklearn.covariance.ledoit_wolf_shrinkage's
  formula; what sklearn's LDA uses with ``shrinkage="auto"``), so the direction is that of
  the shrunk covariance ``(1 - rho) S + rho trace(S) / d I``; RIDGE = 1e-3 is a floor that
  keeps S + lam I invertible when d > n (lam = RIDGE when trace(S) = 0). The shrinkage is
  data-driven because a fixed 1e-3 overfits when d is near or above n (on the demo's best
  cell, n 414, d 576: test AUC 0.84 at 1e-3 against 0.97 for logistic; Ledoit-Wolf chose
  rho 0.06 there). Intercept: half way between
  the projected class means, as for mass-mean. For d <= n the d x d system is solved by
  Cholesky; for d > n by the Woodbury identity,
  ``(lam I + A^T A)^-1 v = (v - A^T (lam I_n + A A^T)^-1 A v) / lam`` with
  ``A = (X - mu_y) / sqrt(n - 2)``, i.e. one n x n Gram matrix and one n x n Cholesky,
  never a d x d matrix. All float64.
* ``logistic-cv``: the logistic probe with C chosen per cell by stratified K-fold
  (K = CV_FOLDS = 5) cross-validation on the TRAINING split only, over
  ``C_GRID = 10**k for k in -3..2``: each C's score is the mean over the K inner folds
  of the validation-fold ROC AUC; the best mean wins, ties (within 1e-12) go to the
  smallest C; then the probe is refitted on the whole training split with that C
  (``FamilyFit.C``; ``cv_auc`` holds every C's mean inner AUC). Inner folds come from
  :func:`stratified_folds` (seeded) unless given. The features are standardised once, on
  the whole training split (unsupervised statistics, no labels), and the inner folds use
  that standardisation: every inner fit then shares one Gram matrix when d > n (the
  solver's dual route), so the 31 fits per cell cost about one Gram plus 31 sets of
  Newton factorisations of the fold size. ``settings.C`` is ignored.

numpy + torch, CPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .metrics import roc_auc
from .settings import ProbeSettings
from .solver import (
    _check_fit_input,
    _dual_newton,
    _gram,
    fit_logistic,
    prepare,
    solve,
    solver_dtype,
    threads_for,
)

RIDGE = 1e-3
CV_FOLDS = 5
C_GRID = tuple(10.0**k for k in range(-3, 3))
_TIE = 1e-12


@dataclass
class FamilyFit:
    """A fitted probe of any family; ``w`` acts on ``(X - mean) / scale`` (see module)."""

    family: str
    w: np.ndarray  # float64 [d]
    intercept: float
    mean: np.ndarray | None
    scale: np.ndarray | None
    probabilities: bool  # True when decision_function returns log-odds of label 1
    C: float | None = None  # logistic: settings.C; logistic-cv: the chosen C
    cv_auc: dict[float, float] | None = None  # logistic-cv: mean inner-fold AUC per C
    ridge: float | None = None  # mass-mean-iid: lam
    n_iter: int = 0  # Newton iterations of the (final) logistic fit; 0 for closed forms
    converged: bool = True

    def decision_function(self, X) -> np.ndarray:
        """Scores for rows of X [k, d] (float64); higher means label 1 (a wrong answer)."""
        Xt = torch.as_tensor(np.ascontiguousarray(X)).to(torch.float64)
        if self.mean is not None:
            Xt = (Xt - torch.as_tensor(self.mean)) / torch.as_tensor(self.scale)
        return (Xt @ torch.as_tensor(self.w) + self.intercept).numpy()


@dataclass(frozen=True)
class Family:
    name: str
    probabilities: bool
    summary: str
    fit: Callable[..., FamilyFit]  # (X, y, settings, seed) -> FamilyFit


def check_family(name: str) -> Family:
    """The registered family called ``name``; a one-line UserError for any other name."""
    if name not in FAMILIES:
        raise UserError("--probe", f"unknown probe family {name!r}",
                        f"choose one of: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def fit_family(family: str, Xtr, ytr, settings: ProbeSettings | None = None, *,
               seed: int = 0) -> FamilyFit:
    """Fit one probe of ``family`` on a training split: X [n, d], y [n] in {0, 1}.

    ``seed`` only matters for logistic-cv (its inner folds). Raises UserError for an
    unknown family and ValueError for malformed input (as fit_logistic does).
    """
    fam = check_family(family)
    settings = settings or ProbeSettings()
    X, y = _check_fit_input(Xtr, ytr, settings.C)
    return fam.fit(X, y, settings, seed)


def _fit_logistic_family(X, y, settings: ProbeSettings, seed: int) -> FamilyFit:
    m = fit_logistic(X, y, C=settings.C, standardize=settings.standardize, tol=settings.tol,
                     max_iter=settings.max_iter)
    return FamilyFit("logistic", m.coef, m.intercept, m.mean, m.scale, True, C=settings.C,
                     n_iter=m.n_iter, converged=m.converged)


def _class_means(Xs: torch.Tensor, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    pos = torch.as_tensor(y > 0)
    return Xs[pos].mean(0), Xs[~pos].mean(0)


def _midway(w: torch.Tensor, mu1: torch.Tensor, mu0: torch.Tensor) -> float:
    return -0.5 * float((mu1 + mu0) @ w)


def _fit_mass_mean(X, y, settings: ProbeSettings, seed: int) -> FamilyFit:
    Xs, mean, scale = prepare(X, settings.standardize, torch.float64)
    mu1, mu0 = _class_means(Xs, y)
    w = mu1 - mu0
    return FamilyFit("mass-mean", w.numpy(), _midway(w, mu1, mu0), mean, scale, False)


def lda_direction(Xs: torch.Tensor, y: np.ndarray) -> tuple[torch.Tensor, float]:
    """(w, lam): ``(S + lam I)^-1 (mu1 - mu0)`` for float64 Xs [n, d] (see module)."""
    n, d = Xs.shape
    mu1, mu0 = _class_means(Xs, y)
    pos = torch.as_tensor(y > 0)
    A = Xs - torch.where(pos[:, None], mu1, mu0)
    A /= math.sqrt(max(n - 2, 1))
    trace = float((A * A).sum())
    delta = mu1 - mu0
    if d <= n:
        S = A.T @ A
        rho = ledoit_wolf(A, S)
        lam = max(rho / (1.0 - rho), RIDGE) * trace / d if trace > 0 else RIDGE
        S.diagonal().add_(lam)
        return torch.cholesky_solve(delta[:, None], torch.linalg.cholesky(S))[:, 0], lam
    G = _gram(A)  # n x n
    rho = ledoit_wolf(A, G)
    lam = max(rho / (1.0 - rho), RIDGE) * trace / d if trace > 0 else RIDGE
    G.diagonal().add_(lam)
    inner = torch.cholesky_solve((A @ delta)[:, None], torch.linalg.cholesky(G))[:, 0]
    return (delta - A.T @ inner) / lam, lam


def ledoit_wolf(A: torch.Tensor, product: torch.Tensor) -> float:
    """Ledoit-Wolf shrinkage intensity in [0, 1 - 1e-9] of centred rows A [n, d], as
    ``sklearn.covariance.ledoit_wolf_shrinkage(A, assume_centered=True)`` computes it, from
    ``product`` = A^T A [d, d] or A A^T [n, n] (when d > n: never a d x d matrix): with S = A^T A / n, mu = trace(S) / d,
    ``delta = (||S||_F^2 - d mu^2) / d``, ``beta = min(delta, (sum_k ||a_k||^4 / n -
    ||S||_F^2) / (n d))`` and rho = beta / delta (0 when beta is 0). A's scale cancels."""
    n, d = A.shape
    row_sq = (A * A).sum(1)
    s_sq = float((product * product).sum()) / n**2  # ||A^T A||_F = ||A A^T||_F
    mu = float(row_sq.sum()) / (n * d)
    delta = (s_sq - d * mu**2) / d
    beta = min(delta, (float((row_sq * row_sq).sum()) / n - s_sq) / (n * d))
    rho = 0.0 if beta <= 0 or delta <= 0 else beta / delta
    return min(rho, 1.0 - 1e-9)


def _fit_mass_mean_iid(X, y, settings: ProbeSettings, seed: int) -> FamilyFit:
    with threads_for(X.size):
        Xs, mean, scale = prepare(X, settings.standardize, torch.float64)
        w, lam = lda_direction(Xs, y)
        mu1, mu0 = _class_means(Xs, y)
    return FamilyFit("mass-mean-iid", w.numpy(), _midway(w, mu1, mu0), mean, scale, False,
                     ridge=lam)


def stratified_folds(y, k: int = CV_FOLDS, seed: int = 0) -> np.ndarray:
    """Fold id in 0..k-1 for every row: each class, in ascending label order, is permuted by
    one ``numpy.random.default_rng(seed)`` and dealt round-robin, the deal continuing from
    one class to the next; so every fold holds floor or ceil of (class size / k) of each
    class and the fold sizes differ by at most 1. ValueError when a class has < k rows.
    """
    y = np.asarray(y).ravel()
    rng = np.random.default_rng(seed)
    folds = np.empty(y.size, dtype=np.int64)
    offset = 0
    for cls in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == cls))
        if rows.size < k:
            raise ValueError(f"{k}-fold cross-validation needs {k} rows of each class; "
                             f"label {cls} has {rows.size}")
        folds[rows] = (offset + np.arange(rows.size)) % k
        offset += rows.size
    return folds


def fit_logistic_cv(X, y, settings: ProbeSettings | None = None, *, folds=None,
                    seed: int = 0, grid: tuple[float, ...] = C_GRID) -> FamilyFit:
    """The logistic-cv family (see module): C chosen by inner CV on this training split.

    ``folds`` [n] gives each row's inner fold id (default ``stratified_folds(y, 5, seed)``);
    every fold must hold both classes.
    """
    settings = settings or ProbeSettings()
    X, y = _check_fit_input(X, y, settings.C)
    folds = stratified_folds(y, CV_FOLDS, seed) if folds is None else np.asarray(folds)
    with threads_for(X.size):
        Xs, mean, scale = prepare(X, settings.standardize, solver_dtype(settings.standardize))
        yt = torch.as_tensor(y, dtype=torch.float64)
        K = _gram(Xs) if Xs.shape[1] > _largest_inner_train(folds) else None
        inner = _inner_problems(Xs, K, yt, folds)
        cv_auc = {C: _mean_inner_auc(inner, C, settings) for C in grid}
        best = max(cv_auc.values())
        C = min(c for c, auc in cv_auc.items() if auc >= best - _TIE)
        w, b, n_iter, ok = _fit_all(Xs, K, yt, C, settings)
    return FamilyFit("logistic-cv", w.numpy(), b, mean, scale, True, C=C, cv_auc=cv_auc,
                     n_iter=n_iter, converged=ok)


def _largest_inner_train(folds: np.ndarray) -> int:
    return int(folds.size - np.bincount(folds).min())


@dataclass
class _Inner:
    """One inner fold: its training rows' features (or Gram block, when d > n) and labels,
    and what scores its validation rows."""

    dual: bool
    train: torch.Tensor  # Xs[tr] (primal) or K[tr][:, tr] (dual)
    val: torch.Tensor  # Xs[va] (primal) or K[va][:, tr] (dual), float64
    y_train: torch.Tensor
    y_val: np.ndarray


def _inner_problems(Xs, K, y: torch.Tensor, folds: np.ndarray) -> list[_Inner]:
    out = []
    for fold in np.unique(folds):
        va = torch.as_tensor(np.flatnonzero(folds == fold))
        tr = torch.as_tensor(np.flatnonzero(folds != fold))
        if K is not None:  # d > every inner training size: the fold's Gram is a block of K
            out.append(_Inner(True, K[tr][:, tr], K[va][:, tr].to(torch.float64), y[tr],
                              y[va].numpy()))
        else:
            out.append(_Inner(False, Xs[tr], Xs[va].to(torch.float64), y[tr], y[va].numpy()))
    return out


def _mean_inner_auc(inner: list[_Inner], C: float, settings: ProbeSettings) -> float:
    """Mean over the inner folds of the validation AUC of the probe fitted at C."""
    aucs = []
    for p in inner:
        if p.dual:
            alpha, b, *_ = _dual_newton(p.train, p.y_train, C, settings.tol, settings.max_iter)
            scores = p.val @ alpha + b
        else:
            fit = solve(p.train, p.y_train, C, settings.tol, settings.max_iter)
            scores = p.val @ fit.w + fit.b
        aucs.append(roc_auc(p.y_val, scores.numpy()))
    return float(np.mean(aucs))


def _fit_all(Xs, K, y: torch.Tensor, C: float, settings: ProbeSettings):
    """(w, b, n_iter, converged) on the whole training split, reusing K when d > n."""
    if K is None or Xs.shape[1] <= Xs.shape[0]:
        fit = solve(Xs, y, C, settings.tol, settings.max_iter)
        return fit.w, fit.b, fit.n_iter, fit.converged
    alpha, b, n_iter, ok, _ = _dual_newton(K, y, C, settings.tol, settings.max_iter)
    # as solver.solve does: w = Xs^T alpha in the features' dtype
    w = Xs.T.to(torch.float64) @ alpha if Xs.dtype == torch.float64 else \
        (Xs.T @ alpha.to(Xs.dtype)).to(torch.float64)
    return w, b, n_iter, ok


def _fit_logistic_cv_family(X, y, settings: ProbeSettings, seed: int) -> FamilyFit:
    return fit_logistic_cv(X, y, settings, seed=seed)


FAMILIES: dict[str, Family] = {
    "logistic": Family("logistic", True, "L2 logistic regression at C (exact solver)",
                       _fit_logistic_family),
    "mass-mean": Family("mass-mean", False, "difference of class means (Marks & Tegmark)",
                        _fit_mass_mean),
    "mass-mean-iid": Family("mass-mean-iid", False,
                            "difference of means whitened by the pooled covariance (LDA)",
                            _fit_mass_mean_iid),
    "logistic-cv": Family("logistic-cv", True,
                          "logistic regression, C by stratified 5-fold CV on the training split",
                          _fit_logistic_cv_family),
}
