"""Many small probes at once: B independent L2 logistic problems solved by batched Newton.

For per-head grids (e.g. 32 layers x 32 heads at one position, n_train 2000, head_dim 128)
a loop of :func:`probeheat.probe.solver.fit_logistic` spends its time in 1024 small,
single-threaded Hessian products and Python overhead. :func:`fit_logistic_batched` solves
the same problems together::

    fit = fit_logistic_batched(X, y, C=1.0)   # X [B, n, d], y [n] (shared) or [B, n]
    fit.coef [B, d], fit.intercept [B]        # on standardised features, like LogisticModel
    fit.decision_function(X_test)             # [B, k] log-odds of label 1 (float64)
    fit.model(b)                              # problem b as a solver.LogisticModel

Each problem ``b`` is fitted exactly as ``fit_logistic(X[b], y[b], C=C,
standardize=standardize, tol=tol, max_iter=max_iter)`` fits it: the same objective
(``C * sum logloss + 0.5 ||w||^2``, intercept unpenalised), the same standardisation
(float32 training statistics, population standard deviation, constant features scaled
by 1: bit-identical to ``solver.standardizer``), the same cold start (zero weights,
intercept at the class log-odds), the same primal Newton iteration on ``(w, b)`` (the
route fit_logistic takes for d <= n) with the same exact 1-D line search, Armijo fallback and stopping rule (half the squared
Newton decrement below ``tol * max(1, objective)``, the step then taken). Problems stop
independently; finished ones leave the batch.

What differs is arithmetic, not the iteration:

* Hessians ``C X^T diag(p(1-p)) X`` are batched float32 GEMMs (standardised features
  are float32 values, so only the accumulation is float32, ~1e-7 relative), the lower
  block triangle only (3 of 4 half-width products, mirrored), bordered by the
  intercept's row in float64 and factored by a batched float64 Cholesky. Gradients,
  margins, objectives and line searches are float64 on the same features, so the fixed
  point is the exact optimum, and a Newton step with a 1e-7-accurate Hessian follows the
  solver's float64 step to ~1e-7 of its length: iterates, iteration counts and answers
  agree (measured on benchmarks/head_fit.py's 1024 cells: coefficients within 2e-8 of
  the loop's, relative, about the solver's own distance to the optimum; identical test
  AUCs). Unscaled features (``standardize=False``) use float64 Hessians, as the
  solver's primal route does.
* Problems run in chunks (``CHUNK_BYTES``: ~6 MB of features, float32 and float64
  copies, 2 problems at n 2000, d 128, so a chunk stays in cache across its
  iterations), on ``threads`` torch threads (default 1). Measured on 2 cores: 2 threads
  fit twice as fast as 1 on an idle machine, but 3-8x slower than 1 (and up to 6x
  slower than the per-cell loop) while other processes kept both cores busy: each
  chunk's GEMMs wait at thread barriers, as solver.threads_for notes for small cells.
  Pass ``threads=torch.get_num_threads()`` on a machine of your own.

Where the time goes (per problem at n 2000, d 128: ~4.3 Newton iterations): the loop
spends ~1.7 ms per iteration on a single-threaded float64 Hessian GEMM (n d^2 = 33M
multiply-adds) plus per-call overhead; the batch does the same iterations with float32,
half-triangle GEMMs across threads and no per-call overhead. It saves precision and
overhead, not arithmetic: measured ~2x on one thread and 3x on two idle cores
(benchmarks/head_fit.py). Tried and
dropped because they give up the exact iteration: chord steps reusing a factorisation
(~20% faster, 5x further from the optimum) and BFGS updates after two Newton steps
(no faster, more iterations, 10x further).

The primal route suits d <= n (per-head probes). It is exact for d > n as well, but a
(d+1) x (d+1) Hessian per problem; there, fit_logistic's Gram-space solver is cheaper.
numpy + torch; the iterations run on the CPU or, with ``device="cuda"``, on a GPU (the
same arithmetic; `probe --site head --device cuda` fits its heads there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .solver import LogisticModel, solver_dtype

_ARMIJO = 1e-4
CHUNK_BYTES = 6 << 20  # features per chunk (float32 + float64 copies): stays in cache
GPU_CHUNK_BYTES = 1 << 30  # on a GPU: as many problems as fit in ~1 GB at once


@dataclass
class BatchedLogistic:
    """B fitted probes. Row b of ``coef`` acts on ``(X[b] - mean[b]) / scale[b]``."""

    coef: np.ndarray  # [B, d] float64
    intercept: np.ndarray  # [B]
    mean: np.ndarray | None  # [B, d], None when not standardised
    scale: np.ndarray | None
    n_iter: np.ndarray  # [B] Newton iterations
    converged: np.ndarray  # [B] bool
    objective: np.ndarray  # [B]

    def decision_function(self, X) -> np.ndarray:
        """Log-odds of label 1 for X [B, k, d]: [B, k] float64, problem by problem with
        LogisticModel's arithmetic (so the scores equal ``self.model(b)``'s exactly)."""
        X = np.asarray(X)
        if X.ndim != 3 or X.shape[0] != self.coef.shape[0]:
            raise ValueError(f"X must be [{self.coef.shape[0]}, k, d]; got {X.shape}")
        return np.stack([self.model(b).decision_function(X[b]) for b in range(X.shape[0])])

    def model(self, b: int) -> LogisticModel:
        """Problem b as a single-probe :class:`LogisticModel`."""
        mean = None if self.mean is None else self.mean[b]
        scale = None if self.scale is None else self.scale[b]
        return LogisticModel(self.coef[b].copy(), float(self.intercept[b]), mean, scale,
                             int(self.n_iter[b]), bool(self.converged[b]),
                             float(self.objective[b]))


def fit_logistic_batched(X, y, *, C: float = 1.0, standardize: bool = True,
                         tol: float = 1e-8, max_iter: int = 100, threads: int = 1,
                         device: str = "cpu") -> BatchedLogistic:
    """Fit B independent probes: X [B, n, d], y [n] (shared by all) or [B, n] in {0, 1}.

    Returns a :class:`BatchedLogistic`; problem b is ``fit_logistic(X[b], y[b], C=C,
    standardize=standardize, tol=tol, max_iter=max_iter)`` (see module docstring).
    Problems are solved together in chunks of ~6 MB of features on the CPU (``CHUNK_BYTES``),
    ~1 GB on a GPU; ``threads``: CPU torch threads while fitting (restored afterwards);
    ``device``: where the Newton iterations run ("cpu" or "cuda"; results come back as
    numpy either way).
    """
    X, Y = _check_batched_input(X, y, C)
    B, n, d = X.shape
    budget = CHUNK_BYTES if torch.device(device).type == "cpu" else GPU_CHUNK_BYTES
    chunk = max(1, budget // (n * d * 12))
    out = _empty(B, d, standardize)
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        for start in range(0, B, chunk):
            _fit_chunk(X, Y, slice(start, min(B, start + chunk)), out,
                       (C, tol, max_iter), device)
    finally:
        torch.set_num_threads(before)
    return out


def _fit_chunk(X, Y, rows: slice, out: BatchedLogistic, solver: tuple, device: str) -> None:
    """Standardise and fit problems ``rows`` on ``device`` (solver: C, tol, max_iter),
    writing their results into ``out``."""
    standardize = out.mean is not None
    Xs, mean, scale = _standardize(
        torch.as_tensor(X[rows]).to(device=device, dtype=solver_dtype(standardize)),
        standardize)
    if mean is not None:
        out.mean[rows], out.scale[rows] = mean.cpu().numpy(), scale.cpu().numpy()
    w, b, n_it, ok, J = _newton(Xs, torch.as_tensor(Y[rows]).to(device), *solver)
    out.coef[rows], out.intercept[rows] = w.cpu().numpy(), b.cpu().numpy()
    out.n_iter[rows], out.converged[rows], out.objective[rows] = n_it, ok, J


def _check_batched_input(X, y, C: float) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 3:
        raise ValueError(f"X must be [B, n, d]; got shape {X.shape}")
    B, n, _ = X.shape
    if y.shape == (n,):
        y = np.broadcast_to(y, (B, n))
    if y.shape != (B, n):
        raise ValueError(f"y must be [n] or [B, n] for X {X.shape}; got {y.shape}")
    if not C > 0:
        raise ValueError(f"C must be positive; got {C}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y must hold only labels 0 and 1")
    pos = y.sum(1)
    if ((pos == 0) | (pos == n)).any():
        raise ValueError("every problem needs both labels 0 and 1")
    if not X.dtype.kind == "f":
        X = X.astype(np.float64)
    return X, y.astype(np.float64)


def _empty(B: int, d: int, standardize: bool) -> BatchedLogistic:
    stats = (np.empty((B, d)), np.empty((B, d))) if standardize else (None, None)
    return BatchedLogistic(np.empty((B, d)), np.empty(B), *stats, np.zeros(B, np.int64),
                           np.zeros(B, bool), np.empty(B))


def _standardize(X: torch.Tensor, standardize: bool):
    """(features, mean, scale) per problem, bit-identical to solver.standardizer per row."""
    if not standardize:
        return X.to(torch.float64), None, None
    mean = X.mean(1, keepdim=True)
    Xc = X - mean
    scale = (Xc * Xc).mean(1, keepdim=True).sqrt().to(torch.float64)
    mean = mean.to(torch.float64)
    tiny = 10 * torch.finfo(X.dtype).eps * mean.abs().clamp(min=1.0)
    scale[scale < tiny] = 1.0
    Xc /= scale.to(X.dtype)
    return Xc, mean[:, 0], scale[:, 0]


class _Batch:
    """The working set: the problems still iterating, their features and Newton state.

    Features are held twice: ``Xh`` [B, n, d] in the Hessian's dtype and ``X64`` in
    float64 for the gradient (``r @ X64``: a batched row-vector product, torch's fast
    layout) and the margins' direction (``X64[i] @ v``: one ``mv`` per problem, as a
    batched column-vector product is measured 5x slower). The intercept is kept apart
    from w (no column of ones: d, not d + 1, GEMM columns).
    """

    def __init__(self, Xs: torch.Tensor, y: torch.Tensor, C: float):
        B, n, d = Xs.shape
        self.Xh = Xs
        self.X64 = Xs if Xs.dtype == torch.float64 else Xs.to(torch.float64)
        self.y, self.C = y, C
        self.ids = torch.arange(B, device=Xs.device)
        p = y.mean(1)
        self.w = torch.zeros(B, d, dtype=torch.float64, device=Xs.device)
        self.b = torch.log(p / (1.0 - p))
        self.f = self.b[:, None].expand(B, n).clone()
        self.J = self.objective(self.w, self.f)

    def objective(self, w, f):
        y = self.y
        loss = torch.nn.functional.softplus(torch.where(y > 0, -f, f)).sum(1)
        return self.C * loss + 0.5 * (w * w).sum(1)

    def keep(self, mask: torch.Tensor) -> None:
        for name in ("Xh", "X64", "y", "ids", "w", "b", "f", "J"):
            setattr(self, name, getattr(self, name)[mask])


def _newton(Xs: torch.Tensor, y: torch.Tensor, C: float, tol: float, max_iter: int):
    """Batched primal Newton; returns (w [B, d], b [B], n_iter, converged, objective)."""
    B = Xs.shape[0]
    s = _Batch(Xs, y, C)
    w_out, b_out, J_out = torch.zeros_like(s.w), torch.zeros_like(s.b), torch.zeros_like(s.J)
    n_iter = np.full(B, max_iter, np.int64)
    ok = np.zeros(B, bool)
    for it in range(1, max_iter + 1):
        p = torch.sigmoid(s.f)
        g = p - s.y
        grad = torch.cat([C * (g[:, None, :] @ s.X64)[:, 0, :] + s.w, C * g.sum(1)[:, None]], 1)
        L = _factor(s, p)
        delta = -torch.cholesky_solve(grad[:, :, None], L)[:, :, 0]
        decrement = -(grad * delta).sum(1)
        stalled = ~(decrement > 0)  # no descent left at float64 precision: stop, no step
        dw, db = delta[:, :-1], delta[:, -1]
        Xd = _directions(s.X64, dw) + db[:, None]
        _take_step(s, _line_search(s, Xd, dw), dw, db, Xd, decrement, stalled)
        finished = stalled | (decrement / 2 <= tol * s.J.abs().clamp(min=1.0))
        if finished.any() or it == max_iter:
            ids = s.ids[finished].cpu().numpy()
            w_out[s.ids], b_out[s.ids], J_out[s.ids] = s.w, s.b, s.J
            n_iter[ids], ok[ids] = it, True
            s.keep(~finished)
            if s.ids.numel() == 0:
                break
    return w_out, b_out, n_iter, ok, J_out.cpu().numpy()


def _directions(X64: torch.Tensor, dw: torch.Tensor, one_product: bool | None = None):
    """The margins' change per unit step, X[i] @ dw[i] for every problem [B, n]: one
    ``mv`` per problem on the CPU (a batched column-vector product measured 5x slower
    there), one batched product on a GPU (one kernel instead of B)."""
    if one_product is None:
        one_product = X64.device.type != "cpu"
    if one_product:
        return torch.bmm(X64, dw[:, :, None])[:, :, 0]
    return torch.stack([torch.mv(X, v) for X, v in zip(X64, dw, strict=True)])


def _factor(s: _Batch, p: torch.Tensor) -> torch.Tensor:
    """Cholesky factors [B, d+1, d+1] of the bordered Hessians
    [[C X^T W X + I, C X^T W], [C W^T X, C sum W]], W = p (1 - p)."""
    Xh = s.Xh
    W = s.C * p * (1.0 - p)
    Wh = W.to(Xh.dtype)
    B, _, d = Xh.shape
    H = torch.empty(B, d + 1, d + 1, dtype=torch.float64, device=Xh.device)
    # X^T W X is symmetric: its lower block triangle in 3 of 4 column-block products
    # (measured 0.76x the time of the full product at d=128), the upper mirrored
    XW = Xh * Wh[:, :, None]
    h = d // 2
    H[:, :h, :h] = XW[:, :, :h].transpose(1, 2) @ Xh[:, :, :h]
    H[:, h:d, :d] = XW[:, :, h:].transpose(1, 2) @ Xh
    H[:, :h, h:d] = H[:, h:d, :h].transpose(1, 2)
    H[:, d, :d] = (Wh[:, None, :] @ Xh)[:, 0, :]
    H[:, :d, d] = H[:, d, :d]
    H[:, d, d] = W.sum(1)
    H.diagonal(dim1=1, dim2=2)[:, :d].add_(1.0)  # the penalty; the intercept has none
    L, info = torch.linalg.cholesky_ex(H)
    bad = info != 0
    if bad.any():  # all rows saturated: the intercept direction is flat (as the solver)
        Hb = H[bad]
        top = Hb.diagonal(dim1=1, dim2=2).amax(1)
        Hb.diagonal(dim1=1, dim2=2).add_(1e-12 * top[:, None])
        L[bad] = torch.linalg.cholesky(Hb)
    return L


def _line_search(s: _Batch, q: torch.Tensor, dw: torch.Tensor) -> torch.Tensor:
    """Per problem, minimise C sum l(f + t q) + 0.5 ||w + t dw||^2 over the step t > 0.

    The solver's 1-D Newton iteration (start t = 1, at most 30 trials, stop when the step
    changes t by at most 1e-8 relative, halve t when a trial leaves t > 0, return 1 where
    the curvature is not positive), run for all problems at once.
    """
    aKd = (s.w * dw).sum(1)
    dKd = (dw * dw).sum(1)
    t = torch.ones_like(aKd)
    live = torch.ones_like(aKd, dtype=torch.bool)
    C = s.C
    for _ in range(30):
        p = torch.sigmoid(s.f + t[:, None] * q)
        slope = C * ((p - s.y) * q).sum(1) + aKd + t * dKd
        curv = C * (p * (1.0 - p) * q * q).sum(1) + dKd
        flat = live & ~(curv > 0)
        t = torch.where(flat, torch.ones_like(t), t)
        live &= ~flat
        t_new = t - slope / curv
        t_new = torch.where(t_new > 0, t_new, t / 2)
        done = live & ((t_new - t).abs() <= 1e-8 * t)
        t = torch.where(live, t_new, t)
        live &= ~done
        if not live.any():
            break
    return t


def _take_step(s: _Batch, t: torch.Tensor, dw, db, Xd, decrement, stalled) -> None:
    """Move each problem by its line-search step, or by Armijo backtracking from 1 where
    that step did not lower the objective; stalled problems stay put."""
    step = t.clone()
    J_new = s.objective(s.w + step[:, None] * dw, s.f + step[:, None] * Xd)
    back = ~(J_new <= s.J) & ~stalled
    if back.any():
        step = torch.where(back, torch.ones_like(step), step)
        for _ in range(40):
            J_try = s.objective(s.w + step[:, None] * dw, s.f + step[:, None] * Xd)
            J_new = torch.where(back, J_try, J_new)
            back &= ~((J_try <= s.J - _ARMIJO * step * decrement) | (step < 1e-10))
            if not back.any():
                break
            step = torch.where(back, step * 0.5, step)
    step = torch.where(stalled, torch.zeros_like(step), step)
    s.w = s.w + step[:, None] * dw
    s.b = s.b + step * db
    s.f = s.f + step[:, None] * Xd
    s.J = torch.where(stalled, s.J, J_new)
