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


def question_groups(records) -> np.ndarray:
    """The group of each record: its ``group`` when the run has one, else its question's
    normalised text (case and spacing ignored), so duplicate questions stay together."""
    out = []
    for r in records:
        group = r.get("group")
        if group is None:
            group = " ".join(str(r.get("question") or r["id"]).casefold().split())
        out.append(str(group))
    return np.array(out, dtype=object)


def group_split(labels, groups, test_fraction: float = 0.2,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Like ``stratified_split``, but no group has rows on both sides.

    When every group is one row this is exactly ``stratified_split``. Otherwise whole
    groups are split, stratified by each group's majority label (ties count as wrong).
    """
    labels = np.asarray(labels).ravel()
    groups = np.asarray(groups, dtype=object).ravel()
    names, inverse = np.unique(groups, return_inverse=True)
    if names.size == labels.size:
        return stratified_split(labels, test_fraction, seed)
    share = np.bincount(inverse, weights=labels, minlength=names.size) / np.bincount(inverse)
    unit_train, unit_test = stratified_split((share >= 0.5).astype(np.int64), test_fraction, seed)
    test_units = np.zeros(names.size, dtype=bool)
    test_units[unit_test] = True
    rows = np.arange(labels.size)
    return rows[~test_units[inverse]], rows[test_units[inverse]]
