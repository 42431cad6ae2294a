"""The directions a sweep steers along: the cell's probe and random controls.

Grid bundles store each cell's test scores, not its weights, so the probe is refitted from
the run's activations at that cell with the grid's settings (C, standardisation, tol,
max_iter, clamped-position rule) on the grid's first split, by the same solver. The refit
must reproduce the grid's test AUC (``refit_auc`` vs ``grid_auc``, and the largest score
difference on the same test examples); a grid it does not reproduce is refused.

The probe acts on standardised features, ``score = w . (x - mean) / scale + b``, so in raw
residual units its weight vector is ``w / scale`` (intercept ``b - sum(w mean / scale)``).
The steering direction ``u`` is that vector normalised: ``+alpha`` moves the residual
stream towards what the probe calls label 1 (an incorrect answer). ``sigma`` is the
standard deviation of the run's activations at the cell (every example that has the
position) projected on ``u``, so ``alpha`` counts standard deviations of the probe's own
feature whatever the layer's scale. Random directions are isotropic unit vectors from
``numpy.random.default_rng(seed)``; each is steered with the probe's norm
``alpha * sigma`` (only the direction differs), and its own sigma is recorded beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bundle.records import error_labels
from ..errors import UserError
from ..probe.cells import fit_cell_many
from ..probe.metrics import roc_auc
from ..probe.settings import ProbeSettings

AUC_TOLERANCE = 1e-3  # a refit on another thread count may move float32 scores by ~1e-6


@dataclass
class CellProbe:
    """The refitted probe of one cell, in raw residual units."""

    layer: int
    position: str
    column: int  # the position's column in the run's activation tensors
    weight: np.ndarray  # [d] float64, raw units
    intercept: float
    direction: np.ndarray  # [d] float64, unit norm
    sigma: float
    n_sigma: int  # examples behind sigma
    grid_auc: float
    refit_auc: float
    max_score_diff: float
    n_test: int

    def score(self, X: np.ndarray) -> np.ndarray:
        """The probe's log-odds of an incorrect answer for rows of X [k, d]."""
        return np.asarray(X, dtype=np.float64) @ self.weight + self.intercept

    @property
    def raw_norm(self) -> float:
        return float(np.linalg.norm(self.weight))


def grid_settings(grid) -> ProbeSettings:
    """The probe settings a grid was fitted with (grid.json ``probe``)."""
    probe = grid.meta.get("probe") or {}
    defaults = ProbeSettings()
    return ProbeSettings(C=float(probe.get("C", defaults.C)),
                         standardize=bool(probe.get("standardize", defaults.standardize)),
                         tol=float(probe.get("tol", defaults.tol)),
                         max_iter=int(probe.get("max_iter", defaults.max_iter)))


def first_split(grid) -> tuple[np.ndarray, np.ndarray]:
    """(train rows, test rows) of the grid's first seed, padding dropped."""
    train, test = grid.tensor("train_rows")[0], grid.tensor("test_rows")[0]
    return train[train >= 0].astype(np.int64), test[test >= 0].astype(np.int64)


def cell_activations(run, grid, layer: int, position: str) -> tuple[np.ndarray, np.ndarray]:
    """The run's activations at one cell [n, d] (float32) and where they exist [n], with
    the grid's clamped-position rule applied."""
    site = (grid.meta.get("probe") or {}).get("site", "resid")
    column = run.positions.index(position)
    X, mask = run.read_layer(layer, site)
    X, present = X[:, column], mask[:, column].astype(bool)
    if (grid.meta.get("probe") or {}).get("exclude_clamped"):
        present &= np.array([position not in set(r.get("clamped", [])) for r in run.records()],
                            dtype=bool)
    return X, present


def refit_cell(run, grid, layer: int, position: str, activations=None) -> CellProbe:
    """Refit the probe of (layer, position) and check it reproduces the grid's test AUC.
    ``activations``: ``cell_activations(...)`` when the caller has read them already."""
    X, present = activations or cell_activations(run, grid, layer, position)
    y = error_labels(run.records())
    train, test = first_split(grid)
    tr, te = train[present[train]], test[present[test]]
    ((fit, scores),) = fit_cell_many(X[tr], [y[tr]], X[te], grid_settings(grid))
    rows, stored, _ = grid.scores(layer, position, 0)
    mine = dict(zip(te.tolist(), scores.tolist(), strict=True))
    if set(rows.tolist()) != set(mine):
        raise UserError(str(grid.path), f"the cell {layer}:{position} was scored on other test "
                        "examples than its split and the run give", "re-run probeheat probe")
    refit_auc = roc_auc(y[rows], np.array([mine[r] for r in rows.tolist()]))
    grid_auc = float(grid.tensor("auc_by_seed")[0, grid.layers.index(layer),
                                                 grid.positions.index(position)])
    diff = float(np.max(np.abs(np.array([mine[r] for r in rows.tolist()]) - stored)))
    if not abs(refit_auc - grid_auc) <= AUC_TOLERANCE:
        raise UserError(str(grid.path), f"the probe refitted at {layer}:{position} does not "
                        f"reproduce the grid's test AUC ({refit_auc:.4f} vs {grid_auc:.4f})",
                        "re-run probeheat probe with this probeheat, then steer")
    weight, intercept = raw_weights(fit.w.numpy(), fit.b, *_stats(X[tr], grid_settings(grid)))
    direction = weight / np.linalg.norm(weight)
    sigma = projected_sigma(X[present], direction)
    return CellProbe(layer, position, run.positions.index(position), weight, intercept,
                     direction, sigma, int(present.sum()), grid_auc, float(refit_auc), diff,
                     int(te.size))


def _stats(Xtr: np.ndarray, settings: ProbeSettings):
    """The training mean and scale the solver standardised with (None, None: unscaled)."""
    if not settings.standardize:
        return None, None
    from ..probe.solver import standardizer

    _, mean, scale = standardizer(np.ascontiguousarray(Xtr))
    return mean, scale


def raw_weights(coef: np.ndarray, intercept: float, mean, scale) -> tuple[np.ndarray, float]:
    """Weights and intercept acting on raw activations (standardisation undone)."""
    coef = np.asarray(coef, dtype=np.float64)
    if mean is None:
        return coef, float(intercept)
    weight = coef / np.asarray(scale, dtype=np.float64)
    return weight, float(intercept - weight @ np.asarray(mean, dtype=np.float64))


def projected_sigma(X: np.ndarray, direction: np.ndarray) -> float:
    """Standard deviation (population) of the rows of X projected on a unit direction."""
    values = np.asarray(X, dtype=np.float64) @ direction
    return float(values.std()) if values.size else float("nan")


def random_directions(n: int, d: int, seed: int) -> np.ndarray:
    """[n, d] isotropic unit vectors, fixed by the seed."""
    rng = np.random.default_rng(seed)
    out = rng.standard_normal((n, d))
    return out / np.linalg.norm(out, axis=1, keepdims=True)
