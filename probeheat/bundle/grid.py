"""Grid bundles (probe results over [layer, position]) and generalization bundles.

Grid layout::

    grid.json           metadata: layers, positions, metrics, probe settings, splits, provenance
    grid.safetensors    "<metric>" [L, P] f64 and friends (see artifacts/FORMAT.md)

Generalization layout::

    generalization.json         train/test run references and the cell used per training run
    generalization.safetensors  "auc" [R_train, R_test] f64
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import Bundle, BundleWriter, get_tensor, open_tensors
from .manifest import DAMAGED_FIX

GRID_META = "grid.json"
GRID_TENSORS = "grid.safetensors"
GEN_META = "generalization.json"
GEN_TENSORS = "generalization.safetensors"
COUNT_NAMES = ("n_train", "n_test", "n_test_pos")


class GridBundle(Bundle):
    kind = "grid"
    meta_file = GRID_META

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.require("layers")]

    @property
    def positions(self) -> list[str]:
        return [str(x) for x in self.require("positions")]

    @property
    def metrics(self) -> list[str]:
        return [str(x) for x in self.require("metrics")]

    @cached_property
    def tensor_names(self) -> list[str]:
        path = self.member(GRID_TENSORS)
        with open_tensors(path) as f:
            return list(f.keys())

    def tensor(self, name: str) -> np.ndarray:
        path = self.member(GRID_TENSORS)
        if name not in self.tensor_names:
            raise UserError(str(path), f"no tensor {name!r}", f"available: {', '.join(self.tensor_names)}")
        with open_tensors(path) as f:
            return get_tensor(f, name, path)

    def metric(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise UserError(str(self.path), f"unknown metric {name!r}", f"this grid has: {', '.join(self.metrics)}")
        return self.tensor(name).astype(np.float64)

    def interval(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        lo, hi = f"{name}_lo", f"{name}_hi"
        if lo in self.tensor_names and hi in self.tensor_names:
            return self.tensor(lo).astype(np.float64), self.tensor(hi).astype(np.float64)
        return None

    def counts(self) -> dict[str, np.ndarray]:
        return {n: self.tensor(n) for n in COUNT_NAMES if n in self.tensor_names}

    def reasons(self) -> dict[tuple[int, str], str]:
        """Why each NaN cell has no probe, keyed by (layer, position)."""
        out = {}
        for item in self.meta.get("nan_reasons", []):
            out[(int(item["layer"]), str(item["position"]))] = str(item["reason"])
        return out

    def best_cell(self, metric: str = "auc") -> tuple[int, str, float] | None:
        values = self.metric(metric)
        if np.all(np.isnan(values)):
            return None
        i, j = np.unravel_index(np.nanargmax(values), values.shape)
        return self.layers[i], self.positions[j], float(values[i, j])

    def scores(self, layer: int, position: str, seed_index: int = 0):
        """(rows into the run's records, test scores, labels with 1 = incorrect) of one cell."""
        i, j = self.layers.index(layer), self.positions.index(position)
        path = self.member(GRID_TENSORS)
        with open_tensors(path) as f:
            scores = f.get_slice("scores")[seed_index, i, j]
            rows = f.get_slice("test_rows")[seed_index]
            labels = get_tensor(f, "labels", path)
        keep = (rows >= 0) & ~np.isnan(scores)
        rows = rows[keep].astype(np.int64)
        return rows, scores[keep].astype(np.float64), labels[rows].astype(np.int64)

    @property
    def run_ref(self) -> dict:
        ref = self.meta.get("run") or {}
        if not isinstance(ref, dict):
            raise UserError(str(self.path / GRID_META), "'run' is not an object", DAMAGED_FIX)
        return ref

    def find_run(self):
        """The run bundle this grid was made from, if it is still where it was (else None)."""
        from . import open_run

        ref = self.run_ref
        candidates = [ref.get("path")] if ref.get("path") else []
        if ref.get("path"):
            candidates.append(str(self.path.parent / Path(ref["path"]).name))
        for candidate in candidates:
            try:
                run = open_run(Path(candidate))
            except UserError:
                continue
            if run.id == ref.get("id"):
                return run
        return None


class GeneralizationBundle(Bundle):
    kind = "generalization"
    meta_file = GEN_META

    def matrix(self) -> np.ndarray:
        path = self.member(GEN_TENSORS)
        with open_tensors(path) as f:
            return get_tensor(f, "auc", path).astype(np.float64)

    @property
    def train_names(self) -> list[str]:
        return [str(r["name"]) for r in self.require("train_runs")]

    @property
    def test_names(self) -> list[str]:
        return [str(r["name"]) for r in self.require("test_runs")]


def write_grid(out: Path, meta: dict, tensors: dict[str, np.ndarray], *, overwrite: bool = False) -> Path:
    """Write a grid bundle atomically. ``meta`` needs layers, positions and metrics."""
    for key in ("layers", "positions", "metrics"):
        if key not in meta:
            raise ValueError(f"grid metadata needs {key!r}")
    shape = (len(meta["layers"]), len(meta["positions"]))
    for name in meta["metrics"]:
        if tensors[name].shape != shape:
            raise ValueError(f"metric {name} has shape {tensors[name].shape}, expected {shape}")
    with BundleWriter(out, "grid", overwrite=overwrite) as writer:
        writer.write_json(GRID_META, {**meta, "id": writer.id})
        writer.write_tensors(GRID_TENSORS, tensors)
    return Path(out)


def write_generalization(out: Path, meta: dict, auc: np.ndarray, *, overwrite: bool = False) -> Path:
    with BundleWriter(out, "generalization", overwrite=overwrite) as writer:
        writer.write_json(GEN_META, {**meta, "id": writer.id})
        writer.write_tensors(GEN_TENSORS, {"auc": np.asarray(auc, dtype=np.float64)})
    return Path(out)
