"""Probe-grid speed: probeheat's solver vs a loop of sklearn LogisticRegression fits.

Both optimise the same objective (standardised features with training statistics, L2,
C=1, intercept unpenalised): sklearn with lbfgs converged (tol 1e-6, max_iter 10000; its
default tol 1e-4 stops ~100 iterations early, measured up to 3e-3 AUC away from the
optimum on this data), probeheat with Newton to a 1e-8 relative objective gap. Data has a planted
low-rank structure and a residual stream that drifts from layer to layer (isotropic noise
converges trivially and flatters every solver). Prints total times, the speed ratio and
the largest |delta AUC| over the cells both fitted.

    python benchmarks/probe_speed.py                 # 32 x 15, n_train 2000, d 4096
    python benchmarks/probe_speed.py --sklearn-cells 48   # sklearn on 48 cells, extrapolated
    python benchmarks/probe_speed.py --quick         # 4 x 5 cells, d 1024, n_train 600,
                                                     # sklearn on 5 of them
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from probeheat.probe.cells import fit_layer
from probeheat.probe.metrics import roc_auc
from probeheat.probe.splits import stratified_split


class PlantedResidualStream:
    """Hidden states [n, P, d] per layer: low-rank signal + drifting noise + outlier dims."""

    def __init__(self, n: int, n_positions: int, d: int, rank: int = 32, seed: int = 0):
        self.rng = np.random.default_rng(seed)
        self.n, self.P, self.d, self.rank = n, n_positions, d, rank
        self.Z = self.rng.standard_normal((n, rank)).astype(np.float32)
        # label 1 = incorrect answer, driven by two latent factors plus noise (~35% positive)
        logit = 0.9 * self.Z[:, 0] + 0.5 * self.Z[:, 1] + self.rng.standard_normal(n)
        self.y = (logit > 0.55).astype(np.int64)
        spread = self.rng.uniform(0.2, 2.0, (1, d)).astype(np.float32)
        self.loadings = [self.rng.standard_normal((rank, d)).astype(np.float32) * spread
                         for _ in range(n_positions)]
        self.noise = [self._noise() for _ in range(n_positions)]
        self.outliers = self.rng.choice(d, 6, replace=False)

    def _noise(self) -> np.ndarray:
        return self.rng.standard_normal((self.n, self.d), dtype=np.float32)

    def layer(self, layer: int, n_layers: int) -> np.ndarray:
        X = np.empty((self.n, self.P, self.d), dtype=np.float32)
        # the label factor's weight rises to mid-depth and fades, differently per position
        for p in range(self.P):
            drift = self.rng.standard_normal((self.rank, self.d)).astype(np.float32)
            self.loadings[p] = 0.97 * self.loadings[p] + 0.25 * drift
            self.noise[p] = 0.9 * self.noise[p] + 0.45 * self._noise()
            gain = 0.15 + 0.6 * np.sin(np.pi * (layer + 1) / (n_layers + 1)) * (p + 1) / self.P
            Z = self.Z.copy()
            Z[:, :2] *= gain
            # torch's BLAS, not numpy's: a second spinning thread pool would slow the solver
            signal = (torch.from_numpy(Z) @ torch.from_numpy(self.loadings[p])).numpy()
            X[:, p, :] = signal + 1.5 * self.noise[p]
            X[:, p, self.outliers] *= 40.0
        return X


def sklearn_cell(X_train, y_train, X_test, y_test, C: float, tol: float) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X_train.astype(np.float64))
    model = LogisticRegression(C=C, solver="lbfgs", tol=tol, max_iter=10000)
    model.fit(scaler.transform(X_train.astype(np.float64)), y_train)
    return roc_auc(y_test, model.decision_function(scaler.transform(X_test.astype(np.float64))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--positions", type=int, default=15)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--d", type=int, default=4096)
    ap.add_argument("--sklearn-cells", type=int, default=0,
                    help="fit sklearn on this many evenly spread cells and extrapolate "
                         "(0 = all cells)")
    ap.add_argument("--sklearn-tol", type=float, default=1e-6)
    ap.add_argument("--threads", type=int, default=2, help="torch threads for probeheat")
    ap.add_argument("--quick", action="store_true", help="4 layers x 5 positions, small data")
    args = ap.parse_args()
    if args.quick:
        args.layers, args.positions, args.n_train, args.n_test, args.d = 4, 5, 600, 150, 1024
        args.sklearn_cells = args.sklearn_cells or 5
    torch.set_num_threads(args.threads)
    n = args.n_train + args.n_test
    data = PlantedResidualStream(n, args.positions, args.d)
    train, test = stratified_split(data.y, args.n_test / n, seed=0)
    mask = np.ones((n, args.positions), dtype=bool)
    cells = [(la, p) for la in range(args.layers) for p in range(args.positions)]
    k = args.sklearn_cells or len(cells)
    sk_cells = set(cells[i] for i in np.linspace(0, len(cells) - 1, min(k, len(cells))
                                                   ).round().astype(int))
    ours_s = sk_s = 0.0
    iters, deltas, aucs = [], [], []
    for la in range(args.layers):
        X = data.layer(la, args.layers)
        t0 = time.perf_counter()
        fit = fit_layer(X, mask, data.y, train, test)
        ours_s += time.perf_counter() - t0
        iters += fit.n_iter.tolist()
        aucs += fit.auc.tolist()
        for p in range(args.positions):
            if (la, p) not in sk_cells:
                continue
            t0 = time.perf_counter()
            auc = sklearn_cell(X[train, p], data.y[train], X[test, p], data.y[test], 1.0,
                               args.sklearn_tol)
            sk_s += time.perf_counter() - t0
            deltas.append(abs(auc - fit.auc[p]))
        print(f"layer {la:2d}: probeheat {ours_s:7.1f} s, sklearn {sk_s:7.1f} s "
              f"({len(deltas)} cells), AUC {min(fit.auc):.3f}-{max(fit.auc):.3f}", flush=True)
    report(args, len(cells), len(sk_cells), ours_s, sk_s, iters, deltas, aucs)


def report(args, n_cells, n_sk, ours_s, sk_s, iters, deltas, aucs) -> None:
    sk_total = sk_s * n_cells / n_sk
    print(f"\ngrid: {args.layers} layers x {args.positions} positions, n_train "
          f"{args.n_train}, n_test {args.n_test}, d {args.d}, {torch.get_num_threads()} "
          f"torch threads; sklearn lbfgs "
          f"tol {args.sklearn_tol:g}")
    print(f"test AUC range {min(aucs):.3f}-{max(aucs):.3f}; Newton iterations per cell "
          f"mean {np.mean(iters):.1f}, max {max(iters)}")
    print(f"probeheat: {ours_s:.1f} s for {n_cells} cells ({ours_s / n_cells:.3f} s/cell)")
    if n_sk < n_cells:
        print(f"sklearn:   {sk_s:.1f} s measured on {n_sk} of {n_cells} cells "
              f"({sk_s / n_sk:.3f} s/cell), EXTRAPOLATED to {sk_total:.1f} s")
    else:
        print(f"sklearn:   {sk_s:.1f} s for {n_cells} cells ({sk_s / n_cells:.3f} s/cell)")
    print(f"speed ratio (sklearn / probeheat): {sk_total / ours_s:.1f}x")
    print(f"max |delta AUC| over {n_sk} cells fitted by both: {max(deltas):.2e}")


if __name__ == "__main__":
    main()
