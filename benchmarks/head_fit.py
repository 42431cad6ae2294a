"""Per-head probe grid: batched Newton (probe/batched.py) vs a per-cell loop of fit_logistic.

A grid of (layer, head) probes at one position: every cell has its own features
[n, head_dim] for the same examples and labels. The data are synthetic with a planted
low-rank signal: shared latent factors Z [n, rank], label 1 (a wrong answer) driven by
two of them; each head reads the factors through its own loadings, the two label
factors scaled by a gain that rises to mid-depth and differs by head, plus isotropic
noise and a few outlier dimensions (40x), so cells range from chance to strong AUCs.

Both fitters solve the same problems (standardised features, C=1, tol 1e-8) on a
stratified 80/20 split; the timings cover fitting and scoring the test rows. Prints both
times, the ratio and the largest |delta AUC| (and |delta coef|, relative) over all cells.

    python benchmarks/head_fit.py            # 32 layers x 32 heads, n_train 2000, head_dim 128
    python benchmarks/head_fit.py --quick    # 4 x 4 cells, n_train 400, head_dim 32
    python benchmarks/head_fit.py --threads 2   # the batched fit on two threads
    python benchmarks/head_fit.py --device cuda # both on a GPU: the loop as `probe
                                                # --device cuda` fits cells, one by one
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import torch

from probeheat.probe.batched import fit_logistic_batched
from probeheat.probe.metrics import roc_auc
from probeheat.probe.solver import LogisticModel, fit_logistic, prepare, solve
from probeheat.probe.splits import stratified_split


def planted_heads(layers: int, heads: int, n: int, d: int, seed: int = 0, rank: int = 16):
    """(X [layers * heads, n, d] float32, y [n]): cell b = layer * heads + head."""
    g = torch.Generator().manual_seed(seed)
    Z = torch.randn(n, rank, generator=g)
    logit = 0.9 * Z[:, 0] + 0.5 * Z[:, 1] + torch.randn(n, generator=g)
    y = (logit > 0.55).numpy().astype(np.int64)
    X = torch.empty(layers * heads, n, d)
    outliers = torch.randperm(d, generator=g)[:3]
    for layer in range(layers):
        depth = np.sin(np.pi * (layer + 1) / (layers + 1))
        for head in range(heads):
            gain = 0.1 + 0.8 * depth * float(torch.rand(1, generator=g))
            loadings = torch.randn(rank, d, generator=g) * torch.empty(d).uniform_(0.2, 2.0,
                                                                                generator=g)
            Zh = Z.clone()
            Zh[:, :2] *= gain
            cell = X[layer * heads + head]
            torch.matmul(Zh, loadings, out=cell)
            cell += 1.5 * torch.randn(n, d, generator=g)
            cell[:, outliers] *= 40.0
    return X.numpy(), y


@dataclass
class Comparison:
    cells: int
    loop_s: float
    batched_s: float
    max_dauc: float
    max_dcoef: float  # max over cells of max |delta coef| / max |coef|
    auc_range: tuple[float, float]
    newton_steps: int  # Newton iterations summed over the cells (batched fit)


def loop_fit(Xtr: np.ndarray, ytr: np.ndarray, device: str) -> list[LogisticModel]:
    """The per-cell loop: fit_logistic on the CPU; on a GPU, each cell as `probe --device
    cuda` fits it (solver.prepare + solver.solve on the device, one cell at a time)."""
    if device == "cpu":
        return [fit_logistic(Xtr[b], ytr) for b in range(Xtr.shape[0])]
    out = []
    for b in range(Xtr.shape[0]):
        Xs, mean, scale = prepare(Xtr[b], True, torch.float32, device)
        fit = solve(Xs, torch.as_tensor(ytr, dtype=torch.float64), 1.0, 1e-8, 100)
        out.append(LogisticModel(fit.w.numpy(), fit.b, mean, scale, fit.n_iter,
                                 fit.converged, fit.objective))
    return out


def _sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def compare(layers: int, heads: int, n_train: int, d: int, seed: int = 0,
            threads: int = 1, device: str = "cpu") -> Comparison:
    n = round(n_train / 0.8)
    X, y = planted_heads(layers, heads, n, d, seed)
    train, test = stratified_split(y, 0.2, seed)
    Xtr, Xte, ytr, yte = X[:, train], X[:, test], y[train], y[test]
    _sync(device)
    t0 = time.perf_counter()
    loop = loop_fit(Xtr, ytr, device)
    loop_scores = [m.decision_function(Xte[b]) for b, m in enumerate(loop)]
    _sync(device)
    t1 = time.perf_counter()
    batched = fit_logistic_batched(Xtr, ytr, threads=threads, device=device)
    batched_scores = batched.decision_function(Xte)
    _sync(device)
    t2 = time.perf_counter()
    auc_loop = np.array([roc_auc(yte, s) for s in loop_scores])
    auc_batched = np.array([roc_auc(yte, s) for s in batched_scores])
    dcoef = max(float(np.abs(batched.coef[b] - m.coef).max() / np.abs(m.coef).max())
                for b, m in enumerate(loop))
    return Comparison(X.shape[0], t1 - t0, t2 - t1, float(np.abs(auc_loop - auc_batched).max()),
                      dcoef, (float(auc_loop.min()), float(auc_loop.max())),
                      int(batched.n_iter.sum()))


def main(argv: list[str] | None = None) -> Comparison:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="4 x 4 cells, n_train 400, head_dim 32")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for the batched fit (default 1, its default)")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                    help="where both fits run (default cpu)")
    args = ap.parse_args(argv)
    if args.quick:
        args.layers, args.heads, args.n_train, args.head_dim = 4, 4, 400, 32
    r = compare(args.layers, args.heads, args.n_train, args.head_dim, args.seed, args.threads,
                args.device)
    threads = args.threads
    print(f"{r.cells} cells ({args.layers} layers x {args.heads} heads), n_train "
          f"{args.n_train}, head_dim {args.head_dim}; device {args.device}; batched on "
          f"{threads} torch threads, the loop as fit_logistic chooses (1 thread for cells "
          "this small)")
    print(f"per-cell fit_logistic loop: {r.loop_s:8.2f} s  ({1e3 * r.loop_s / r.cells:.2f} ms/cell)")
    print(f"fit_logistic_batched:       {r.batched_s:8.2f} s  "
          f"({1e3 * r.batched_s / r.cells:.2f} ms/cell)")
    print(f"speed-up: {r.loop_s / r.batched_s:.1f}x")
    print(f"max |delta AUC| {r.max_dauc:.2e}; max |delta coef| / max |coef| {r.max_dcoef:.2e}; "
          f"test AUCs {r.auc_range[0]:.3f}..{r.auc_range[1]:.3f}")
    floor = hessian_floor(r, args.n_train, args.head_dim, threads, args.device)
    print(f"floor: {r.newton_steps} Newton steps x a float32 half Hessian at this machine's "
          f"GEMM rate ({args.device}, {threads} CPU thread(s); {floor.gflops:.0f} GFLOP/s, "
          "measured now) = "
          f"{floor.seconds:.2f} s; a 10x speed-up leaves {r.loop_s / 10:.2f} s "
          f"({floor.seconds / (r.loop_s / 10):.2f}x of it is the Hessians alone)")
    return r


@dataclass
class Floor:
    gflops: float
    seconds: float  # the batched fit's Hessian products alone, at that rate


def hessian_floor(r: Comparison, n: int, d: int, threads: int, device: str = "cpu") -> Floor:
    """Time the Hessian-shaped float32 product (X^T (w X), n x d) on this machine now; the
    batched fit's Hessians are 3/4 of that product (the lower block triangle) per step."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        X, w = torch.randn(n, d, device=device), torch.rand(n, 1, device=device)
        for _ in range(5):
            X.T @ (X * w)
        reps = 50
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(reps):
            X.T @ (X * w)
        _sync(device)
        per = (time.perf_counter() - t0) / reps
    finally:
        torch.set_num_threads(before)
    return Floor(2 * n * d * d / per / 1e9, r.newton_steps * 0.75 * per)


if __name__ == "__main__":
    main()
