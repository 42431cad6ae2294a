"""What a sweep measures per (alpha, direction), and the one-line verdict (numpy only).

- accuracy with a 95% Wilson score interval (binomial; good at small n and near 0 or 1);
- ``p_vs_unsteered``: exact two-sided McNemar test of the same questions answered with and
  without the vector (a binomial test on the questions whose grade flipped);
- ``changed``: the share of answers whose generated tokens differ from the unsteered ones;
- ``probe_score``: the mean of the probe's log-odds of an error on the new answers, read at
  the cell (questions whose answer lacks the position are left out; ``probe_n`` counts
  the rest);
- ``kl``: the mean KL divergence on the neutral texts (probeheat/steer/kl.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..probe.metrics import wilson  # noqa: F401 (the steer tests import it from here)
from .settings import format_alpha


def mcnemar_exact(before: np.ndarray, after: np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes (1.0 with no flips)."""
    before, after = np.asarray(before, bool), np.asarray(after, bool)
    gained, lost = int((~before & after).sum()), int((before & ~after).sum())
    n, k = gained + lost, min(gained, lost)
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail)


@dataclass
class SweepTable:
    """Per (alpha, direction) numbers, [A, D]; direction 0 is the probe's."""

    alphas: list[float]
    names: list[str]
    accuracy: np.ndarray
    accuracy_lo: np.ndarray
    accuracy_hi: np.ndarray
    p_vs_unsteered: np.ndarray
    changed: np.ndarray
    probe_score: np.ndarray
    probe_n: np.ndarray
    kl: np.ndarray

    def as_tensors(self) -> dict[str, np.ndarray]:
        return {name: np.asarray(getattr(self, name), dtype=np.float64 if name != "probe_n"
                                 else np.int64)
                for name in ("accuracy", "accuracy_lo", "accuracy_hi", "p_vs_unsteered",
                             "changed", "probe_score", "probe_n", "kl")}


def sweep_table(alphas, names, correct, changed, scores, kl) -> SweepTable:
    """The table from per-question results: correct/changed [A, D, Q] (0/1), scores
    [A, D, Q] (NaN: position missing), kl [A, D]."""
    correct, changed = np.asarray(correct, bool), np.asarray(changed, bool)
    A, D, Q = correct.shape
    zero = list(alphas).index(0.0)
    acc, lo, hi, p = (np.zeros((A, D)) for _ in range(4))
    for a in range(A):
        for d in range(D):
            k = int(correct[a, d].sum())
            acc[a, d] = k / Q if Q else math.nan
            lo[a, d], hi[a, d] = wilson(k, Q)
            p[a, d] = mcnemar_exact(correct[zero, d], correct[a, d])
    finite = np.isfinite(scores)
    n = finite.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, np.where(finite, scores, 0.0).sum(-1) / np.maximum(n, 1), np.nan)
    return SweepTable(list(alphas), list(names), acc, lo, hi, p, changed.mean(-1), mean, n,
                      np.asarray(kl, dtype=np.float64))


def headline(table: SweepTable) -> int:
    """The alpha index where the probe's direction moves accuracy most (ties: the smaller
    |alpha|); the unsteered index when no alpha moves it."""
    zero = table.alphas.index(0.0)
    base = table.accuracy[zero, 0]
    order = sorted(range(len(table.alphas)),
                   key=lambda a: (-abs(table.accuracy[a, 0] - base), abs(table.alphas[a])))
    best = order[0]
    return best if abs(table.accuracy[best, 0] - base) > 0 else zero


def verdict(table: SweepTable, layer: int, position: str) -> str:
    """One line, in the issue's form: ``probe direction at L23 exact_answer_last: accuracy
    0.29 → 0.35 [0.31, 0.39] at α=+4; random directions: 0.28–0.30; KL 0.02`` (then the
    share of answers that changed and the McNemar p against the unsteered answers). The
    random band is the random directions' lowest to highest accuracy at the same alpha;
    when no alpha moves the probe's accuracy, over every alpha."""
    zero, a = table.alphas.index(0.0), headline(table)
    acc = table.accuracy
    head = f"probe direction at L{layer} {position}: accuracy {acc[zero, 0]:.2f}"
    if a == zero:
        rand = acc[:, 1:]
        return (head + f" at every α ({format_alpha(min(table.alphas))}.."
                f"{format_alpha(max(table.alphas))})" + _band(rand)
                + f"; KL up to {np.nanmax(table.kl[:, 0]):.2g}; changed answers at most "
                f"{table.changed[:, 0].max():.0%}")
    rand = acc[a, 1:]
    inside = rand.size and rand.min() <= acc[a, 0] <= rand.max()
    return (head + f" → {acc[a, 0]:.2f} [{table.accuracy_lo[a, 0]:.2f}, "
            f"{table.accuracy_hi[a, 0]:.2f}] at α={format_alpha(table.alphas[a])}"
            + _band(rand) + (" (the probe's is inside that band)" if inside else "")
            + f"; KL {table.kl[a, 0]:.2g}; {table.changed[a, 0]:.0%} of answers changed, "
            f"McNemar p {table.p_vs_unsteered[a, 0]:.2g}")


def _band(rand: np.ndarray) -> str:
    if not rand.size:
        return "; no random directions"
    return f"; random directions: {np.nanmin(rand):.2f}–{np.nanmax(rand):.2f}"
