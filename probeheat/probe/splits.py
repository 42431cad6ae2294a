"""Train/test splits of a run's examples (stratified by label, deterministic by seed)."""

from __future__ import annotations

import numpy as np


def stratified_split(labels, test_fraction: float = 0.2,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, test_rows), sorted, with each class split in the same proportion.

    Deterministic: ``numpy.random.default_rng(seed)`` permutes each class; the test set
    takes ``round(test_fraction * class size)`` of it.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
    labels = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in np.unique(labels):
        rows = rng.permutation(np.flatnonzero(labels == cls))
        k = int(round(test_fraction * rows.size))
        test.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
