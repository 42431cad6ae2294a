"""The probe solver matches sklearn's optimum; AUC and intervals are exact and calibrated."""

from __future__ import annotations

import numpy as np
import pytest

from probeheat.probe.cells import fit_layer
from probeheat.probe.metrics import bootstrap_ci, delong_ci, roc_auc
from probeheat.probe.settings import MIN_TRAIN_PER_CLASS, PRESETS
from probeheat.probe.solver import fit_logistic
from probeheat.probe.splits import stratified_split


def planted(n: int, d: int, seed: int = 0, rank: int = 8):
    """Low-rank hidden states with a few huge dimensions; label driven by two factors."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, rank))
    X = Z @ (rng.standard_normal((rank, d)) * rng.uniform(0.2, 2.0, d)) + rng.standard_normal((n, d))
    X[:, :3] *= 40.0
    X += rng.standard_normal(d) * 3.0
    y = (0.8 * Z[:, 0] + 0.4 * Z[:, 1] + rng.standard_normal(n) > 0.4).astype(np.int64)
    return X.astype(np.float32), y


def sklearn_reference(X, y, X_test, C=1.0, standardize=True):
    linear_model = pytest.importorskip("sklearn.linear_model")
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    X, X_test = X.astype(np.float64), X_test.astype(np.float64)
    if standardize:
        scaler = preprocessing.StandardScaler().fit(X)
        X, X_test = scaler.transform(X), scaler.transform(X_test)
    model = linear_model.LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=50000)
    model.fit(X, y)
    return model, model.decision_function(X_test)


@pytest.mark.parametrize("n,d,C,standardize", [
    (240, 600, 1.0, True),     # d > n: Gram-space Newton
    (240, 600, 0.05, True),
    (400, 60, 1.0, True),      # d <= n: primal Newton
    (150, 300, 1.0, False),    # unscaled, like the paper preset
])
def test_matches_sklearn_optimum(n, d, C, standardize):
    X, y = planted(n + 200, d, seed=n + d)
    model = fit_logistic(X[:n], y[:n], C=C, standardize=standardize)
    ref, ref_scores = sklearn_reference(X[:n], y[:n], X[n:], C, standardize)
    assert model.converged
    ours = model.decision_function(X[n:])
    assert abs(roc_auc(y[n:], ours) - roc_auc(y[n:], ref_scores)) <= 1e-3
    scale = np.abs(ref.coef_[0]).max()
    np.testing.assert_allclose(model.coef, ref.coef_[0], atol=2e-3 * scale)
    # sklearn's lbfgs stalls short of the optimum on unscaled features (line-search
    # failure near 1e-4 gradient); ours must reach an objective at least as low.
    assert model.intercept == pytest.approx(ref.intercept_[0], abs=2e-3 if standardize else 1e-2)
    Xs = X[:n].astype(np.float64)
    if standardize:
        Xs = (Xs - model.mean) / model.scale
    ours_J = objective(Xs, y[:n], model.coef, model.intercept, C)
    assert ours_J <= objective(Xs, y[:n], ref.coef_[0], ref.intercept_[0], C) + 1e-9 * ours_J


def objective(X, y, w, b, C):
    f = X @ w + b
    return C * np.sum(np.logaddexp(0, np.where(y > 0, -f, f))) + 0.5 * w @ w


def test_objective_is_stationary_on_float64_data():
    # The exact optimum: the gradient of C*sum(logloss) + 0.5||w||^2 vanishes.
    X, y = planted(120, 300, seed=3)
    model = fit_logistic(X, y, C=0.7)
    Xs = (X.astype(np.float64) - model.mean) / model.scale
    p = 1 / (1 + np.exp(-(Xs @ model.coef + model.intercept)))
    grad_w = 0.7 * Xs.T @ (p - y) + model.coef
    grad_b = 0.7 * np.sum(p - y)
    assert np.abs(grad_w).max() < 1e-3 * np.abs(model.coef).max()
    assert abs(grad_b) < 1e-3


def test_constant_features_are_ignored_like_standard_scaler():
    X, y = planted(100, 50, seed=4)
    X[:, 7] = 5.0
    model = fit_logistic(X, y)
    assert model.scale[7] == 1.0 and model.coef[7] == 0.0


def test_fit_rejects_single_class():
    X, _ = planted(30, 10)
    with pytest.raises(ValueError, match="both labels"):
        fit_logistic(X, np.zeros(30, dtype=int))


def test_paper_preset_is_unscaled_c1():
    assert PRESETS["paper"] == {"C": 1.0, "standardize": False}


# --- AUC and intervals ---------------------------------------------------------------------

def test_auc_matches_sklearn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    for _ in range(20):
        n = int(rng.integers(5, 300))
        labels = rng.integers(0, 2, n)
        labels[:2] = [0, 1]
        scores = rng.integers(0, 6, n).astype(float)  # heavy ties
        assert roc_auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores),
                                                        abs=1e-12)


def test_auc_known_values():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert roc_auc([0, 1], [0.5, 0.5]) == 0.5
    assert np.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert np.isnan(delong_ci([0, 0], [0.1, 0.2])[0])


def test_intervals_cover_known_auc():
    # Binormal scores: positives ~ N(mu, 1), negatives ~ N(0, 1) -> AUC = Phi(mu / sqrt 2).
    from statistics import NormalDist

    mu = 1.0
    true_auc = NormalDist().cdf(mu / np.sqrt(2))
    rng = np.random.default_rng(1)
    draws, delong_hits, boot_hits = 300, 0, 0
    for i in range(draws):
        labels = np.r_[np.ones(60, int), np.zeros(140, int)]
        scores = np.r_[rng.normal(mu, 1, 60), rng.normal(0, 1, 140)]
        lo, hi = delong_ci(labels, scores, 0.95)
        delong_hits += lo <= true_auc <= hi
        if i < 60:
            lo, hi = bootstrap_ci(labels, scores, 0.95, n_boot=200, seed=i)
            boot_hits += lo <= true_auc <= hi
    assert delong_hits / draws >= 0.90
    assert boot_hits / 60 >= 0.85  # fewer draws: looser bound at the same nominal level


def test_interval_contains_estimate_and_narrows_with_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (100, 1600):
        labels = rng.integers(0, 2, n)
        scores = labels + rng.normal(0, 1.5, n)
        lo, hi = delong_ci(labels, scores)
        assert lo <= roc_auc(labels, scores) <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


# --- splits and layers ---------------------------------------------------------------------

def test_stratified_split_is_deterministic_and_stratified():
    labels = np.r_[np.ones(50, int), np.zeros(150, int)]
    tr, te = stratified_split(labels, 0.2, seed=5)
    tr2, te2 = stratified_split(labels, 0.2, seed=5)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    assert labels[te].sum() == 10 and te.size == 40
    assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == 200
    assert not np.array_equal(te, stratified_split(labels, 0.2, seed=6)[1])


def test_fit_layer_matches_single_fits_and_masks_rows():
    n, P, d = 200, 3, 120
    X = np.stack([planted(n, d, seed=s)[0] for s in range(P)], axis=1)
    y = planted(n, d, seed=0)[1]
    mask = np.ones((n, P), dtype=bool)
    mask[::5, 1] = False  # position 1 is missing for a fifth of the examples
    tr, te = stratified_split(y, 0.25, seed=0)
    fit = fit_layer(X, mask, y, tr, te)
    rows = tr[mask[tr, 1]]
    single = fit_logistic(X[rows, 1], y[rows])
    test = te[mask[te, 1]]
    expected = single.decision_function(X[test, 1]).astype(np.float32)
    np.testing.assert_allclose(fit.scores[1][mask[te, 1]], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(fit.scores[1][~mask[te, 1]]).all()
    assert fit.n_train[1] == rows.size and fit.n_test[1] == test.size
    assert fit.auc[1] == pytest.approx(roc_auc(y[test], fit.scores[1][mask[te, 1]]))
    assert fit.auc_lo[1] <= fit.auc[1] <= fit.auc_hi[1]


def test_cells_without_enough_examples_are_nan_with_reason():
    n, d = 60, 20
    X, y = planted(n, d)
    mask = np.ones((n, 2), dtype=bool)
    mask[y == 1, 1] = False  # position 1 exists only for correct answers
    tr, te = stratified_split(y, 0.25, seed=0)
    fit = fit_layer(np.stack([X, X], axis=1), mask, y, tr, te)
    assert np.isfinite(fit.auc[0]) and 0 not in fit.reasons
    assert np.isnan(fit.auc[1]) and np.isnan(fit.scores[1]).all()
    assert "too few training examples" in fit.reasons[1]
    assert f"need {MIN_TRAIN_PER_CLASS}" in fit.reasons[1]


def test_non_finite_hidden_states_give_nan_cell_with_reason():
    X, y = planted(60, 20)
    layer = np.stack([X, X], axis=1)
    layer[3, 1, 5] = np.inf  # e.g. float16 overflow in the run
    tr, te = stratified_split(y, 0.25, seed=0)
    fit = fit_layer(layer, np.ones((60, 2), dtype=bool), y, tr, te)
    assert np.isfinite(fit.auc[0]) and np.isnan(fit.auc[1])
    assert "NaN or inf" in fit.reasons[1]
