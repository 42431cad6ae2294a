"""What a cell is worth: baselines, a permutation null, token identity and paired tests.

All of it uses the grid's own splits and seeds, so every comparison is on the same test
examples:

- **baselines** (probe/baselines.py) scored per seed, with DeLong intervals;
- **paired tests**: each cell against the best baseline on the first seed's test examples
  that both have (paired DeLong), corrected across the grid's cells (Benjamini-Hochberg by
  default, Holm with ``--correction holm``);
- **token identity**: ``gain_layer0``, a cell's AUC minus the same position's at layer 0 (the
  token embedding, no context); ``gain_baseline``, its AUC minus the best baseline's;
- **permutation null**: at each position's best layer, the probe refitted on K permutations
  of the first seed's training labels and scored on the true test labels; its median and
  95th percentile are what chance reaches there. The refits use the grid's probe family
  (and, in head grids, each column's head: one null per position and head).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..progress import Progress
from .baselines import Scored, run_baselines, score_split
from .cells import cell_problem, fit_cell, fit_cell_many
from .heads import cell_features
from .metrics import adjust_p, delong_paired, roc_auc


@dataclass
class Controls:
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, np.ndarray] = field(default_factory=dict)  # extra [L, P] metrics
    meta: dict = field(default_factory=dict)


def evaluate(run, res, settings, columns: list[int], progress: str = "quiet") -> Controls:
    """Every control of a grid result ``res`` of ``run`` (see the module docstring)."""
    out = Controls()
    scored, names = baseline_table(run, res, settings, out)
    best = best_baseline(out.tensors["baseline_auc"], names)
    out.meta["baselines"]["best"] = best
    auc = nanmean0(res.auc)
    if 0 in res.layers:
        out.metrics["gain_layer0"] = auc - auc[res.layers.index(0)][None, :]
    if best is not None:
        b = names.index(best)
        out.metrics["gain_baseline"] = auc - out.tensors["baseline_auc"][b]
        paired_tests(res, scored[0][b], settings, out)
    with Progress("null", len(res.positions), unit="cells", mode=progress) as bar:
        permutation_null(run, res, settings, columns, out, bar)
    return out


def nanmean0(a: np.ndarray) -> np.ndarray:
    from .grid import nanmean

    return nanmean(a)


def baseline_table(run, res, settings, out: Controls) -> tuple[list, list[str]]:
    """Score every baseline on every seed's split; fill the baseline_* tensors and meta."""
    baselines = run_baselines(run)
    names = [b.name for b in baselines]
    S, B, K = len(res.splits), len(baselines), res.scores.shape[-1]
    auc, lo, hi = (np.full((S, B), np.nan) for _ in range(3))
    n_test, sign = np.zeros((S, B), np.int64), np.zeros((S, B), np.int8)
    scores = np.full((S, B, K), np.nan, dtype=np.float32)
    scored: list[list[Scored | None]] = []
    for s, (tr, te) in enumerate(res.splits):
        row = [score_split(b, res.labels, tr, te, settings.level) for b in baselines]
        scored.append(row)
        for k, got in enumerate(row):
            if got is not None:
                auc[s, k], lo[s, k], hi[s, k] = got.auc, got.lo, got.hi
                n_test[s, k], sign[s, k] = got.n_test, got.sign
                scores[s, k, :got.scores.size] = got.scores
    out.tensors.update({
        "baseline_auc": nanmean0(auc), "baseline_auc_lo": nanmean0(lo),
        "baseline_auc_hi": nanmean0(hi), "baseline_auc_by_seed": auc,
        "baseline_n_test": n_test, "baseline_sign": sign, "baseline_scores": scores})
    absent = {b.name: b.absent for b in baselines if b.absent}
    for k, b in enumerate(baselines):
        if b.name not in absent and np.isnan(auc[:, k]).all():
            absent[b.name] = "too few examples of each class have this value"
    out.meta["baselines"] = {
        "names": names, "descriptions": {b.name: b.description for b in baselines},
        "absent": absent,
        "orientation": "the sign giving a training AUC >= 0.5, chosen on each seed's training "
                       "split; stored scores are oriented (higher = wrong)"}
    return scored, names


def best_baseline(auc: np.ndarray, names: list[str]) -> str | None:
    if not np.isfinite(auc).any():
        return None
    return names[int(np.nanargmax(auc))]


def paired_tests(res, reference: Scored | None, settings, out: Controls) -> None:
    """Each cell against the best baseline: paired DeLong on seed 0's shared test examples."""
    L, P = len(res.layers), len(res.positions)
    p = np.full((L, P), np.nan)
    delta = np.full((L, P), np.nan)
    if reference is not None:
        te = res.splits[0][1]
        y = res.labels[te]
        base = reference.scores
        for i in range(L):
            for j in range(P):
                cell = res.scores[0, i, j, :te.size].astype(np.float64)
                keep = np.isfinite(cell) & np.isfinite(base)
                if keep.any():
                    delta[i, j], _, p[i, j] = delong_paired(y[keep], cell[keep], base[keep])
    out.tensors.update({"p_vs_baseline": p, "q_vs_baseline": adjust_p(p, settings.correction),
                        "delta_vs_baseline": delta})


def permutation_null(run, res, settings, columns: list[int], out: Controls, bar) -> None:
    """K refits on permuted training labels at each position's best layer (seed 0's split)."""
    K, P = settings.permutations, len(res.positions)
    null = np.full((P, K), np.nan)
    layer_of = np.full(P, -1, dtype=np.int64)
    auc = nanmean0(res.auc)
    best_rows = {j: int(np.nanargmax(auc[:, j])) for j in range(P) if np.isfinite(auc[:, j]).any()}
    tr, te = res.splits[0]
    for row in sorted(set(best_rows.values())):
        X, mask = run.read_layer(res.layers[row], settings.site)
        for j in (j for j, r in best_rows.items() if r == row):
            layer_of[j] = res.layers[row]
            null[j] = _null_of_cell(*cell_features(res, X, mask, j), res.labels, (tr, te),
                                    settings)
            bar.advance(1)
        del X, mask
    out.tensors.update({"perm_auc": null, "perm_layer": layer_of})
    with np.errstate(all="ignore"):
        p95 = [None if np.isnan(v).all() else float(np.nanpercentile(v, 95)) for v in null]
        median = [None if np.isnan(v).all() else float(np.nanmedian(v)) for v in null]
    out.meta["controls"] = {"permutation": {
        "k": K, "split_seed": settings.seeds[0], "cells": "each position's best layer",
        "p95": p95, "median": median,
        "what": "probe refitted on permuted training labels, scored on the true test labels"}}


def _null_of_cell(X, mask, y, split, settings) -> np.ndarray:
    tr, te = (rows[mask[rows]] for rows in split)
    if cell_problem(y[tr], y[te]) is not None:
        return np.full(settings.permutations, np.nan)
    rng = np.random.default_rng([settings.seeds[0], 7919])
    perms = [rng.permutation(y[tr]) for _ in range(settings.permutations)]
    if settings.family == "logistic":
        fits = fit_cell_many(X[tr], perms, X[te], settings)
        return np.array([roc_auc(y[te], scores) for _, scores in fits])
    # every other family refits the same way as its grid's cells (cells.fit_cell)
    quick = replace(settings, calibration=False)  # test scores only
    return np.array([roc_auc(y[te], fit_cell(X[tr], perm, X[te], quick, settings.seeds[0])[1])
                     for perm in perms])
