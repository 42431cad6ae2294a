"""Selection bundles: choosing among sampled answers by probe, against greedy, random and
majority vote (`probeheat select`).

Layout (artifacts/FORMAT.md, "Selection bundle")::

    selection.json          metadata: run, grid, cell, split, the accuracy table
    selection.safetensors   per test question [Q]: rows, each method's 0/1 correctness,
                            the probe's choice; the probe's scores of every sample [Q, K]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import Bundle, BundleWriter
from .manifest import DAMAGED_FIX
from .schema import check_selection_meta

SELECTION_META = "selection.json"
SELECTION_TENSORS = "selection.safetensors"
METHODS = ("greedy", "random", "majority", "probe")


class SelectionBundle(Bundle):
    kind = "selection"
    meta_file = SELECTION_META
    tensors_file = SELECTION_TENSORS

    def check_meta(self, meta: dict, where: str) -> None:
        check_selection_meta(meta, where)

    @property
    def table(self) -> dict[str, dict]:
        """method -> {accuracy, lo, hi, n, p_vs_greedy, ...} (selection.json)."""
        return {m: dict(self.require("table")[m]) for m in METHODS}

    @property
    def n_questions(self) -> int:
        return int(self.require("questions")["n"])

    def _spec(self, name: str) -> tuple[str, list[int | None]] | None:
        Q, K = self.n_questions, int(self.require("samples")["k"])
        specs = {"rows": ("I64", [Q]), "choice": ("I64", [Q]), "scores": ("F32", [Q, K])}
        specs.update({f"{m}_correct": ("I8", [Q]) for m in METHODS})
        return specs.get(name)

    def tensor(self, name: str) -> np.ndarray:
        values = self.read_tensor(name, self._spec(name))
        if name.endswith("_correct") and not np.isin(values, (0, 1)).all():
            raise UserError(str(self.path / SELECTION_TENSORS),
                            f"tensor {name!r} holds values other than 0 and 1",
                            DAMAGED_FIX)
        return values

    def check_all(self) -> None:
        """Every tensor present and sound, and the table's accuracies equal to the
        per-question correctness they summarise (verify)."""
        for name in ("rows", "choice", "scores", *(f"{m}_correct" for m in METHODS)):
            values = self.tensor(name)
            method = name[:-len("_correct")]
            if method in METHODS:
                stated = self.table[method]["accuracy"]
                if values.size and abs(float(values.mean()) - stated) > 1e-9:
                    raise UserError(str(self.path / SELECTION_META), f"{method} accuracy "
                                    f"{stated} disagrees with {SELECTION_TENSORS}", DAMAGED_FIX)


def write_selection(out: Path, meta: dict, tensors: dict[str, np.ndarray], *,
                    overwrite: bool = False) -> Path:
    """Write a selection bundle atomically (metadata checked against the format first)."""
    with BundleWriter(out, "selection", overwrite=overwrite) as writer:
        meta = {**meta, "id": writer.id}
        check_selection_meta(meta, str(Path(out) / SELECTION_META))
        writer.write_json(SELECTION_META, meta)
        writer.write_tensors(SELECTION_TENSORS, tensors)
    return Path(out)
