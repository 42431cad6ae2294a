"""Probe families, calibration metrics and the batched solver, against closed forms and
reference loops (numpy, sklearn, fit_logistic)."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probeheat.errors import UserError
from probeheat.probe import calibration as cal
from probeheat.probe import families
from probeheat.probe.batched import fit_logistic_batched
from probeheat.probe.families import (
    C_GRID,
    FAMILIES,
    RIDGE,
    check_family,
    fit_family,
    fit_logistic_cv,
    stratified_folds,
)
from probeheat.probe.metrics import bootstrap_ci, roc_auc
from probeheat.probe.settings import ProbeSettings
from probeheat.probe.solver import fit_logistic

REPO = Path(__file__).resolve().parents[1]


def planted(n: int, d: int, seed: int = 0, rank: int = 6, shift: float = 3.0):
    """Low-rank features with a few huge dimensions; label 1 driven by two factors."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank))
    X = Z @ (rng.standard_normal((rank, d)) * rng.uniform(0.2, 2.0, d)) + rng.standard_normal((n, d))
    X[:, :2] *= 30.0
    X += rng.standard_normal(d) * shift
    y = (0.8 * Z[:, 0] + 0.4 * Z[:, 1] + rng.standard_normal(n) > 0.3).astype(np.int64)
    return X.astype(np.float32), y


def standardized(X):
    X = X.astype(np.float64)
    return (X - X.mean(0)) / X.std(0)


# ---------------------------------------------------------------- families


@pytest.mark.parametrize("standardize", [True, False])
def test_mass_mean_is_the_difference_of_class_means(standardize):
    X, y = planted(300, 40, seed=1)
    fit = fit_family("mass-mean", X, y, ProbeSettings(standardize=standardize))
    Xs = standardized(X) if standardize else X.astype(np.float64)
    mu1, mu0 = Xs[y == 1].mean(0), Xs[y == 0].mean(0)
    np.testing.assert_allclose(fit.w, mu1 - mu0, rtol=1e-6, atol=1e-9 * np.abs(mu1 - mu0).max())
    assert fit.intercept == pytest.approx(-0.5 * (mu1 + mu0) @ (mu1 - mu0), rel=1e-6)
    assert not fit.probabilities and (fit.mean is None) == (not standardize)
    np.testing.assert_allclose(fit.decision_function(X[:50]),
                               (Xs[:50] - (mu1 + mu0) / 2) @ (mu1 - mu0), rtol=1e-6, atol=1e-6)
    # higher scores mean label 1: the projected class means sit either side of zero
    s = fit.decision_function(X)
    assert s[y == 1].mean() > 0 > s[y == 0].mean()


def ledoit_wolf_shrinkage(R, assume_centered=True):
    return importlib.import_module("sklearn.covariance").ledoit_wolf_shrinkage(
        R, assume_centered=assume_centered)


def lda_reference(X, y, standardize=True):
    Xs = standardized(X) if standardize else X.astype(np.float64)
    n, d = Xs.shape
    mu1, mu0 = Xs[y == 1].mean(0), Xs[y == 0].mean(0)
    R = Xs - np.where((y == 1)[:, None], mu1, mu0)
    S = R.T @ R / (n - 2)
    rho = ledoit_wolf_shrinkage(R, assume_centered=True)  # sklearn's, on the same rows
    lam = max(rho / (1 - rho), RIDGE) * np.trace(S) / d
    w = np.linalg.solve(S + lam * np.eye(d), mu1 - mu0)
    return w, -0.5 * (mu1 + mu0) @ w, lam


@pytest.mark.parametrize("n,d,standardize", [(400, 30, True), (80, 240, True), (80, 240, False)])
def test_mass_mean_iid_is_ridge_lda(n, d, standardize):
    X, y = planted(n, d, seed=n + d)
    fit = fit_family("mass-mean-iid", X, y, ProbeSettings(standardize=standardize))
    w, b, lam = lda_reference(X, y, standardize)
    assert fit.ridge == pytest.approx(lam, rel=1e-9)
    np.testing.assert_allclose(fit.w, w, rtol=0, atol=1e-7 * np.abs(w).max())
    assert fit.intercept == pytest.approx(b, rel=1e-7, abs=1e-7 * np.abs(w).max())


def test_lda_never_forms_a_d_by_d_matrix_when_d_exceeds_n(monkeypatch):
    shapes = []
    real = torch.linalg.cholesky

    def spy(A, *args, **kwargs):
        shapes.append(tuple(A.shape))
        return real(A, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky", spy)
    X, y = planted(60, 500, seed=3)
    families.lda_direction(torch.as_tensor(standardized(X)), y)
    assert shapes == [(60, 60)]
    shapes.clear()
    families.lda_direction(torch.as_tensor(standardized(X[:, :40])), y)
    assert shapes == [(40, 40)]


def test_logistic_family_is_the_exact_solver():
    X, y = planted(200, 300, seed=4)
    settings = ProbeSettings(C=0.3)
    fit = fit_family("logistic", X, y, settings)
    ref = fit_logistic(X, y, C=0.3)
    np.testing.assert_array_equal(fit.w, ref.coef)
    assert fit.intercept == ref.intercept and fit.probabilities and fit.C == 0.3
    np.testing.assert_array_equal(fit.decision_function(X), ref.decision_function(X))


def test_every_family_scores_higher_for_label_one():
    X, y = planted(500, 30, seed=5)
    for name in FAMILIES:
        fit = fit_family(name, X[:400], y[:400])
        assert fit.family == name and fit.probabilities == FAMILIES[name].probabilities
        assert roc_auc(y[400:], fit.decision_function(X[400:])) > 0.75, name


def test_unknown_family_is_one_user_error_naming_the_known_ones():
    X, y = planted(50, 5)
    with pytest.raises(UserError) as err:
        fit_family("ridge", X, y)
    line = err.value.line()
    assert line.startswith("--probe: unknown probe family 'ridge'") and "\n" not in line
    assert all(name in line for name in FAMILIES)
    assert check_family("mass-mean").name == "mass-mean"


# ---------------------------------------------------------------- logistic-cv


def test_stratified_folds_partition_each_class_evenly():
    y = np.r_[np.zeros(23, np.int64), np.ones(12, np.int64)]
    folds = stratified_folds(y, 5, seed=2)
    assert np.array_equal(folds, stratified_folds(y, 5, seed=2))
    assert not np.array_equal(folds, stratified_folds(y, 5, seed=3))
    for cls, size in ((0, 23), (1, 12)):
        counts = np.bincount(folds[y == cls], minlength=5)
        assert counts.sum() == size and counts.max() - counts.min() <= 1
    sizes = np.bincount(folds, minlength=5)
    assert sizes.max() - sizes.min() <= 1
    with pytest.raises(ValueError, match="label 1 has 4"):
        stratified_folds(np.r_[np.zeros(10, np.int64), np.ones(4, np.int64)], 5)


def sklearn_cv_reference(X, y, folds, grid):
    """Mean validation AUC per C: sklearn LogisticRegression on standardised features."""
    linear_model = importlib.import_module("sklearn.linear_model")
    threadpoolctl = importlib.import_module("threadpoolctl")
    Xs = standardized(X)
    out = {}
    # one BLAS thread: these fits are tiny, and on a busy machine threads only wait
    with threadpoolctl.threadpool_limits(1):
        for C in grid:
            out[C] = _sklearn_mean_auc(linear_model, Xs, y, folds, C)
    return out


def _sklearn_mean_auc(linear_model, Xs, y, folds, C):
    aucs = []
    for k in np.unique(folds):
        tr, va = folds != k, folds == k
        model = linear_model.LogisticRegression(C=C, tol=1e-8, max_iter=10000)
        model.fit(Xs[tr], y[tr])
        aucs.append(roc_auc(y[va], model.decision_function(Xs[va])))
    return float(np.mean(aucs))


@pytest.mark.parametrize("n,d,seed", [(250, 40, 251), (120, 300, 124)])  # primal; dual
def test_logistic_cv_picks_the_reference_loops_C(n, d, seed):
    model_selection = importlib.import_module("sklearn.model_selection")
    X, y = planted(n, d, seed=seed)
    skf = model_selection.StratifiedKFold(5, shuffle=True, random_state=0)
    folds = np.empty(n, np.int64)
    for k, (_, va) in enumerate(skf.split(X, y)):
        folds[va] = k
    ref = sklearn_cv_reference(X, y, folds, C_GRID)
    ranked = sorted(ref.values(), reverse=True)
    assert ranked[0] - ranked[1] > 2e-3, "test data must make the choice unambiguous"
    fit = fit_logistic_cv(X, y, folds=folds)
    assert fit.C == max(ref, key=ref.get) and min(C_GRID) < fit.C < max(C_GRID)
    for C in C_GRID:
        assert fit.cv_auc[C] == pytest.approx(ref[C], abs=5e-4)
    refit = fit_logistic(X, y, C=fit.C)  # then refitted on the whole training split
    np.testing.assert_allclose(fit.w, refit.coef, atol=1e-5 * np.abs(refit.coef).max())
    assert fit.intercept == pytest.approx(refit.intercept, abs=1e-5)


def test_logistic_cv_ties_go_to_the_smallest_C(monkeypatch):
    X, y = planted(100, 10)
    monkeypatch.setattr(families, "_mean_inner_auc",
                        lambda inner, C, settings: 0.8 if C >= 0.1 else 0.7)
    assert fit_logistic_cv(X, y).C == 0.1
    monkeypatch.setattr(families, "_mean_inner_auc", lambda *a: 0.8)
    assert fit_family("logistic-cv", X, y).C == min(C_GRID)


def test_logistic_cv_folds_cover_exactly_the_rows_it_is_given(monkeypatch):
    """Inner folds are drawn from the rows passed in (the training split): every row is
    validated once and trains in the other K - 1 folds; nothing else enters."""
    seen = []
    real = families._inner_problems

    def spy(Xs, K, y, folds):
        inner = real(Xs, K, y, folds)
        seen.append((Xs.shape[0], sum(p.y_val.size for p in inner),
                     [p.y_train.numel() + p.y_val.size for p in inner]))
        return inner

    monkeypatch.setattr(families, "_inner_problems", spy)
    X, y = planted(90, 8)
    fit_logistic_cv(X, y)
    assert seen == [(90, 90, [90] * 5)]


# ---------------------------------------------------------------- calibration


def test_ece_and_reliability_curve_by_hand():
    probs = np.array([0.05, 0.15, 0.12, 0.95, 0.85, 1.0])
    labels = np.array([0, 0, 1, 1, 0, 1])
    value, curve = cal.ece(probs, labels)
    # bins: 0 -> {0.05}, 1 -> {0.15, 0.12}, 8 -> {0.85}, 9 -> {0.95, 1.0}
    assert value == pytest.approx((0.05 + 2 * 0.365 + 0.85 + 2 * 0.025) / 6)
    np.testing.assert_array_equal(curve.count, [1, 2, 0, 0, 0, 0, 0, 0, 1, 2])
    assert curve.mean_prob[1] == pytest.approx(0.135) and curve.observed[1] == 0.5
    assert curve.observed[9] == 1.0 and np.isnan(curve.mean_prob[4])
    np.testing.assert_allclose(curve.edges, np.linspace(0, 1, 11))
    assert cal.ece(np.full(8, 0.25), [1, 0, 0, 0, 0, 1, 0, 0])[0] == pytest.approx(0.0)
    assert cal.ece([0.3, 0.3], [1, 1], bins=2)[0] == pytest.approx(0.7)
    with pytest.raises(ValueError):
        cal.ece([1.2], [1])


def test_recall_at_fpr_by_hand():
    neg = np.arange(100.0)  # thresholds: 5% -> 94 (5 negatives above), 1% -> 98 (1 above)
    pos = np.array([94.0, 94.5, 96.0, 10.0, 99.5])
    scores, labels = np.r_[pos, neg], np.r_[np.ones(5), np.zeros(100)]
    assert cal.threshold_at_fpr(neg, 0.05) == 94.0
    assert cal.recall_at_fpr(scores, labels, 0.05) == pytest.approx(3 / 5)  # 94 itself: no
    assert cal.recall_at_fpr(scores, labels, 0.01) == pytest.approx(1 / 5)
    # tied negatives at the threshold are not flagged: FPR 1/5 although 2/5 was allowed
    assert cal.threshold_at_fpr([5, 4, 4, 4, 3], 0.4) == 4
    assert cal.recall_at_fpr([4, 4.5, 5, 4, 4, 4, 3], [1, 1, 0, 0, 0, 0, 0], 0.4) == 0.5
    assert cal.threshold_at_fpr(np.arange(50.0), 0.01) == 49.0  # fpr * n0 < 1: the maximum
    assert cal.threshold_at_fpr(np.arange(100.0), 0.29) == 70.0  # 0.29 * 100 = 28.999...
    assert np.isnan(cal.recall_at_fpr([1, 2], [0, 0], 0.05))


def test_recall_threshold_is_the_lowest_that_keeps_the_fpr():
    rng = np.random.default_rng(0)
    neg = np.round(rng.standard_normal(333), 1)  # many ties
    for fpr in (0.01, 0.05, 0.2):
        t = cal.threshold_at_fpr(neg, fpr)
        assert np.mean(neg > t) <= fpr
        lower = neg[neg < t].max()
        assert np.mean(neg > lower) > fpr


def test_stratified_bootstrap_reproduces_metrics_bootstrap_ci():
    rng = np.random.default_rng(1)
    labels = (rng.random(120) < 0.3).astype(np.int64)
    scores = labels + rng.standard_normal(120)
    assert cal.stratified_bootstrap(roc_auc, labels, scores, 0.9, 300, seed=4) == \
        bootstrap_ci(labels, scores, 0.9, 300, seed=4)


def test_recall_interval_brackets_the_estimate_and_is_seeded():
    rng = np.random.default_rng(2)
    labels = (rng.random(600) < 0.4).astype(np.int64)
    scores = 1.5 * labels + rng.standard_normal(600)
    value = cal.recall_at_fpr(scores, labels, 0.05)
    lo, hi = cal.recall_at_fpr_ci(scores, labels, 0.05, n_boot=400, seed=0)
    assert 0 < lo < value < hi < 1 and hi - lo < 0.3
    assert cal.recall_at_fpr_ci(scores, labels, 0.05, n_boot=400, seed=0) == (lo, hi)
    assert cal.recall_at_fpr_ci(scores, labels, 0.05, n_boot=400, seed=1) != (lo, hi)


def test_ece_interval_is_the_percentile_of_ece_over_the_shared_resamples():
    rng = np.random.default_rng(4)
    labels = (rng.random(150) < 0.3).astype(np.int64)
    probs = np.clip(0.3 + 0.4 * (labels - 0.3) + 0.15 * rng.standard_normal((3, 150)), 0, 1)
    lo, hi = cal.ece_ci_many(probs, labels, n_boot=200, seed=[5, 1])
    pos, neg = probs[:, labels == 1], probs[:, labels == 0]
    ip, ineg = cal.stratified_indices(pos.shape[1], neg.shape[1], 200, [5, 1])
    both = np.r_[np.ones(ip.shape[1], np.int64), np.zeros(ineg.shape[1], np.int64)]
    for c in range(3):  # one cell at a time, with the plain ece() on each resample
        boot = [cal.ece(np.r_[pos[c, ip[r]], neg[c, ineg[r]]], both)[0] for r in range(200)]
        want = np.quantile(boot, [0.025, 0.975])
        assert np.allclose([lo[c], hi[c]], want, atol=1e-12)
        assert lo[c] < hi[c]
    # recall's interval draws the very same resamples for the same seed
    ip2, _ = cal.stratified_indices(pos.shape[1], neg.shape[1], 200, [5, 1])
    assert np.array_equal(ip, ip2)


def test_platt_matches_weighted_maximum_likelihood():
    linear_model = importlib.import_module("sklearn.linear_model")
    rng = np.random.default_rng(3)
    s = 40.0 * rng.standard_normal(300) + 100.0  # unscaled scores, like mass-mean's
    y = (rng.random(300) < 1 / (1 + np.exp(-(s - 100.0) / 40.0))).astype(np.int64)
    m = cal.platt(s, y)
    n1, n0 = y.sum(), y.size - y.sum()
    t = np.where(y == 1, (n1 + 1) / (n1 + 2), 1 / (n0 + 2))
    z = ((s - s.mean()) / s.std())[:, None]  # sklearn on standardised scores, unpenalised
    ref = linear_model.LogisticRegression(C=1e12, tol=1e-12, max_iter=10000)
    ref.fit(np.r_[z, z], np.r_[np.ones(300), np.zeros(300)], sample_weight=np.r_[t, 1 - t])
    a_ref = ref.coef_[0, 0] / s.std()
    b_ref = ref.intercept_[0] - a_ref * s.mean()
    assert m.a == pytest.approx(a_ref, rel=1e-5) and m.b == pytest.approx(b_ref, rel=1e-5)
    np.testing.assert_allclose(m(s), ref.predict_proba(z)[:, 1], atol=1e-6)


def test_platt_stays_finite_on_separable_training_scores():
    m = cal.platt([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0], [0, 0, 0, 1, 1, 1])
    assert np.isfinite([m.a, m.b]).all() and m.a > 0
    p = m([-3.0, 3.0])  # the smoothed targets bound the fit: t- = 1/5, t+ = 4/5
    assert 0.0 < p[0] < 0.25 and 0.75 < p[1] < 1.0
    assert cal.platt([1.0, 1.0, 1.0], [0, 1, 1]).a == 0.0


def test_probabilities_are_mapped_on_the_training_split_only():
    # by construction: the map is built from training scores and labels and is then a
    # function of scores alone
    assert list(inspect.signature(cal.platt).parameters) == ["train_scores", "train_labels"]
    assert list(inspect.signature(cal.PlattMap.__call__).parameters) == ["self", "scores"]
    rng = np.random.default_rng(4)
    tr_s, te_s = rng.standard_normal(200) * 5, rng.standard_normal(80) * 5
    tr_y = (tr_s + 3 * rng.standard_normal(200) > 0).astype(np.int64)
    te_y = (te_s + 3 * rng.standard_normal(80) > 0).astype(np.int64)
    base = cal.calibrate_cell((tr_s, tr_y), (te_s, te_y), probabilities=False)
    shuffled = cal.calibrate_cell((tr_s, tr_y), (te_s, rng.permutation(te_y)),
                                  probabilities=False)
    np.testing.assert_array_equal(base.probs, shuffled.probs)  # test labels unused
    assert base.ece != shuffled.ece  # ... except by the metrics
    flipped = cal.calibrate_cell((tr_s, 1 - tr_y), (te_s, te_y), probabilities=False)
    assert not np.allclose(base.probs, flipped.probs)  # the training labels do matter
    np.testing.assert_allclose(base.probs, cal.platt(tr_s, tr_y)(te_s))
    logit = cal.calibrate_cell((tr_s, tr_y), (te_s, te_y), probabilities=True)
    np.testing.assert_allclose(logit.probs, 1 / (1 + np.exp(-te_s)))
    assert logit.platt is None and set(logit.recall) == {0.01, 0.05}
    lo, hi = logit.recall_ci[0.05]
    assert lo <= logit.recall[0.05] <= hi


# ---------------------------------------------------------------- batched solver


def objective(Xs, y, w, b, C):
    f = Xs @ w + b
    return C * float(np.logaddexp(0.0, np.where(y == 1, -f, f)).sum()) + 0.5 * float(w @ w)


def batch_of_problems(B: int, n: int, d: int, seed: int = 0):
    X = np.empty((B, n, d), np.float32)
    ys = np.empty((B, n), np.int64)
    for b in range(B):
        X[b], ys[b] = planted(n, d, seed=seed + b)
    return X, ys


@pytest.mark.parametrize("n,d,C,standardize", [
    (300, 24, 1.0, True),
    (300, 24, 0.05, True),
    (200, 16, 1.0, False),   # unscaled: float64 Hessians
    (60, 90, 1.0, True),     # d > n still exact, through the primal
])
def test_batched_matches_a_loop_of_fit_logistic(n, d, C, standardize, monkeypatch):
    import probeheat.probe.batched as batched

    X, ys = batch_of_problems(5, n + 100, d, seed=d)
    Xtr, ytr = X[:, :n], ys[:, :n]
    monkeypatch.setattr(batched, "CHUNK_BYTES", 2 * n * d * 12)  # chunks of 2 problems
    fit = fit_logistic_batched(Xtr, ytr, C=C, standardize=standardize)
    scores = fit.decision_function(X[:, n:])
    assert fit.converged.all()
    for b in range(5):
        ref = fit_logistic(Xtr[b], ytr[b], C=C, standardize=standardize)
        # for d > n the reference runs in Gram space on a float32 Gram matrix, returning
        # w = Xs^T alpha in float32: it is itself only float32-accurate there
        scale = np.abs(ref.coef).max() * (1e-6 if d <= n else 1e-5)
        np.testing.assert_allclose(fit.coef[b], ref.coef, rtol=0, atol=scale)
        assert fit.intercept[b] == pytest.approx(ref.intercept, abs=scale)
        Xs = (Xtr[b] - ref.mean) / ref.scale if standardize else Xtr[b].astype(np.float64)
        ours = objective(Xs, ytr[b], fit.coef[b], fit.intercept[b], C)
        assert ours <= objective(Xs, ytr[b], ref.coef, ref.intercept, C) * (1 + 1e-12)
        assert fit.objective[b] == pytest.approx(ours, rel=1e-7)  # float32 vs float64 features
        ref_scores = ref.decision_function(X[b, n:])
        assert abs(roc_auc(ys[b, n:], scores[b]) - roc_auc(ys[b, n:], ref_scores)) <= 1e-6
        if standardize:
            np.testing.assert_array_equal(fit.mean[b], ref.mean)
            np.testing.assert_array_equal(fit.scale[b], ref.scale)
        np.testing.assert_allclose(fit.model(b).decision_function(X[b, n:]), scores[b])


def test_batched_handles_constant_and_separable_problems_like_the_solver():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((3, 60, 5)).astype(np.float32)
    X[:, :, 2] = 3.0  # a constant feature: scale 1, as solver.standardizer sets it
    ys = (X[:, :, 0] > 0).astype(np.int64)  # separable: the optimum is at large weights
    fit = fit_logistic_batched(X, ys, C=100.0)
    for b in range(3):
        ref = fit_logistic(X[b], ys[b], C=100.0)
        np.testing.assert_array_equal(fit.scale[b], ref.scale)
        assert fit.scale[b][2] == 1.0 and fit.n_iter[b] == ref.n_iter
        np.testing.assert_allclose(fit.coef[b], ref.coef, atol=1e-8 * np.abs(ref.coef).max())


def test_batched_shares_one_label_vector():
    X, ys = batch_of_problems(3, 150, 12)
    shared = fit_logistic_batched(X, ys[0])
    each = fit_logistic_batched(X, np.broadcast_to(ys[0], (3, 150)).copy())
    np.testing.assert_array_equal(shared.coef, each.coef)
    with pytest.raises(ValueError, match="both labels"):
        fit_logistic_batched(X, np.zeros(150))


def test_batched_directions_one_product_equals_one_mv_per_problem():
    from probeheat.probe.batched import _directions

    g = torch.Generator().manual_seed(3)
    X = torch.randn(4, 50, 7, dtype=torch.float64, generator=g)
    dw = torch.randn(4, 7, dtype=torch.float64, generator=g)
    one = _directions(X, dw, one_product=True)  # the GPU's route, here on the CPU
    each = _directions(X, dw, one_product=False)
    assert one.shape == (4, 50)
    torch.testing.assert_close(one, each, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(each[2], X[2] @ dw[2])


def test_head_grids_fit_on_the_settings_device(monkeypatch):
    import probeheat.probe.heads as heads

    seen = []
    real = heads.fit_logistic_batched

    def spy(*args, **kwargs):
        seen.append(kwargs.get("device"))
        return real(*args, **kwargs)

    monkeypatch.setattr(heads, "fit_logistic_batched", spy)
    X, ys = batch_of_problems(2, 80, 4)
    settings = ProbeSettings(device="cpu")
    heads._fit_heads(type("Out", (), {"n_iter": np.zeros(2), "converged": np.zeros(2)})(),
                     [0, 1], (X[:, :60], ys[0, :60], X[:, 60:]), settings, 0)
    assert seen == ["cpu"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_batched_on_the_gpu_equals_the_cpu():
    X, ys = batch_of_problems(6, 400, 32)
    cpu = fit_logistic_batched(X[:, :300], ys[0, :300])
    gpu = fit_logistic_batched(X[:, :300], ys[0, :300], device="cuda")
    assert (gpu.n_iter == cpu.n_iter).all() and gpu.converged.all()
    np.testing.assert_allclose(gpu.coef, cpu.coef, rtol=0, atol=1e-6 * np.abs(cpu.coef).max())
    for b in range(6):
        a = roc_auc(ys[0, 300:], cpu.decision_function(X[:, 300:])[b])
        c = roc_auc(ys[0, 300:], gpu.decision_function(X[:, 300:])[b])
        assert abs(a - c) <= 1e-6


def test_head_benchmark_quick_mode_agrees(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("head_fit", REPO / "benchmarks" / "head_fit.py")
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "head_fit", bench)
    spec.loader.exec_module(bench)
    r = bench.main(["--quick"])
    assert r.cells == 16 and r.max_dauc <= 1e-6 and r.max_dcoef <= 1e-6
    assert r.auc_range[1] > 0.7  # the planted signal is found
    assert "speed-up" in capsys.readouterr().out
