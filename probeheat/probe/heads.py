"""Head grids: one probe per (layer, attention head) at each chosen position.

A run's site "head" stores, per layer, ``head.k`` [n, P, n_heads * head_dim]: head h of a
position is columns ``h * head_dim .. (h + 1) * head_dim - 1`` (run/capture.py). A head
grid is an ordinary grid bundle whose columns are (position, head) pairs, position-major:
column ``j`` is head ``j % n_heads`` of position ``heads.positions[j // n_heads]``, named
``POSITION/hH`` (``exact_answer_last/h3``), so every grid reader (metrics, intervals,
best cell, paired tests, tables) works unchanged; ``grid.json``'s ``heads`` object says how
to fold the columns back into one layer x head grid per position (FORMAT.md).

All heads of one position share their training and test rows, so they are fitted
together: the logistic family by :func:`probeheat.probe.batched.fit_logistic_batched`
(batched Newton, each problem exactly what ``fit_logistic`` computes), the other families
cell by cell (closed forms, or logistic-cv's inner loop).
"""

from __future__ import annotations

import numpy as np

from .batched import fit_logistic_batched
from .cells import LayerFit, _empty_layer, cell_problem, feature_problem, fit_cell
from .cellstats import calibrate_cells, score_cells
from .settings import ProbeSettings
from .targets import class_names

SEPARATOR = "/h"


def head_columns(positions: list[str], n_heads: int) -> list[str]:
    """The grid's column names, position-major: ``POSITION/hH``."""
    return [f"{p}{SEPARATOR}{h}" for p in positions for h in range(n_heads)]


def heads_meta(run, positions: list[str]) -> dict:
    """grid.json's ``heads`` object of a head grid over ``positions``."""
    info = run.heads
    return {"n_heads": int(info["n_heads"]), "head_dim": int(info["head_dim"]),
            "positions": list(positions), "module": info.get("module"),
            "columns": "position-major: column j is head j % n_heads of position "
                       "positions[j // n_heads], named POSITION/hH"}


def fit_head_layer(X: np.ndarray, mask: np.ndarray, y: np.ndarray, split: tuple,
                   settings: ProbeSettings, shape: tuple[int, int],
                   seed: int | None = 0) -> LayerFit:
    """Every (position, head) probe of one layer: X [n, P, H * hd], mask [n, P], y [n];
    ``split`` = (train_rows, test_rows), ``shape`` = (n_heads, head_dim). Returns a
    LayerFit over the P * H columns (position-major)."""
    train_rows, test_rows = split
    H, hd = shape
    y = np.asarray(y).astype(np.int64)
    out = _empty_layer(X.shape[1] * H, len(test_rows), settings.calibration)
    for p in range(X.shape[1]):
        tr = train_rows[mask[train_rows, p]]
        te_keep = mask[test_rows, p]
        te = test_rows[te_keep]
        cols = list(range(p * H, (p + 1) * H))
        out.n_train[cols], out.n_test[cols], out.n_test_pos[cols] = tr.size, te.size, \
            int(y[te].sum())
        Xtr = X[tr, p].reshape(tr.size, H, hd).transpose(1, 0, 2)  # [H, n_train, hd]
        Xte = X[te, p].reshape(te.size, H, hd).transpose(1, 0, 2)
        common = cell_problem(y[tr], y[te], class_names(settings.target))
        ok = []
        for h, c in enumerate(cols):
            reason = common or feature_problem(Xtr[h], Xte[h])
            if reason is None:
                ok.append(h)
            else:
                out.reasons[c] = reason
        if not ok:
            continue
        fitted = [cols[h] for h in ok]
        s, train_scores = _fit_heads(out, fitted, (Xtr[ok], y[tr], Xte[ok]), settings, seed)
        out.scores[np.ix_(fitted, np.flatnonzero(te_keep))] = s
        score_cells(out, fitted, s, y[te], settings.level)
        if settings.calibration:
            calibrate_cells(out, fitted, (s, y[te]), train_scores,
                            probabilities=train_scores is None, level=settings.level,
                            seed=[seed or 0, p])
    return out


def _fit_heads(out, cols: list[int], data: tuple, settings: ProbeSettings, seed):
    """Fit the heads ``cols`` (features [B, n, hd]); write n_iter and converged into
    ``out``; return (test scores [B, m] rounded to float32, per-head (train scores,
    labels) for Platt scaling, or None for log-odds families)."""
    Xtr, ytr, Xte = data
    if settings.family == "logistic":
        fit = fit_logistic_batched(Xtr, ytr, C=settings.C, standardize=settings.standardize,
                                   tol=settings.tol, max_iter=settings.max_iter,
                                   device=settings.device)
        out.n_iter[cols], out.converged[cols] = fit.n_iter, fit.converged
        return fit.decision_function(Xte).astype(np.float32).astype(np.float64), None
    scores, train = [], []
    for b, c in enumerate(cols):
        fit, s, train_scores = fit_cell(Xtr[b], ytr, Xte[b], settings, seed or 0)
        out.n_iter[c], out.converged[c] = fit.n_iter, fit.converged
        scores.append(s)
        train.append(None if train_scores is None else (train_scores, ytr))
    return np.stack(scores), None if train[0] is None else train


def cell_features(res, X: np.ndarray, mask: np.ndarray, j: int):
    """(features [n, d], mask [n]) of grid column j from one layer's run tensors (all the
    run's columns): a position's hidden state, or one head's slice of it."""
    heads = getattr(res, "heads", None)
    if not heads:
        return X[:, res.columns[j]], mask[:, res.columns[j]]
    H, hd = heads["n_heads"], heads["head_dim"]
    p, h = divmod(j, H)
    return X[:, res.columns[p], h * hd:(h + 1) * hd], mask[:, res.columns[p]]
