"""Grid bundles (probe results over [layer, position]) and generalization bundles.

Grid layout::

    grid.json           metadata: layers, positions, metrics, probe settings, splits, provenance
    grid.safetensors    "<metric>" [L, P] f64 and friends (see artifacts/FORMAT.md)

Generalization layout::

    generalization.json         train/test run references and the cell used per training run
    generalization.safetensors  "auc" [R_train, R_test] f64
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from .base import (
    Bundle,
    BundleWriter,
    expect_tensor,
    get_tensor,
    open_tensors,
    tensor_header,
)
from .manifest import DAMAGED_FIX
from .schema import check_generalization_meta, check_grid_meta
from .tensorfile import Cells

if TYPE_CHECKING:
    import numpy as np

GRID_META = "grid.json"
GRID_TENSORS = "grid.safetensors"
GEN_META = "generalization.json"
GEN_TENSORS = "generalization.safetensors"
COUNT_NAMES = ("n_train", "n_test", "n_test_pos")
UNIT_METRICS = ("auc", "accuracy", "ece", "recall_at_fpr1", "recall_at_fpr5")  # in [0, 1]
LOWER_IS_BETTER = ("ece",)  # metrics whose best cell is the lowest
# default colour ranges of metrics that do not live in 0.5..1, for the viewer and figures
METRIC_RANGES = {"ece": (0.0, 0.3), "recall_at_fpr1": (0.0, 1.0), "recall_at_fpr5": (0.0, 1.0)}
PAIRED = ("p_vs_baseline", "q_vs_baseline", "delta_vs_baseline")  # [L, P]
# baselines and controls (FORMAT.md): dtype and dims; S, K: any (checked against each other
# by their writer), B: the number of baselines grid.json names
EVIDENCE = {
    "baseline_auc": ("F64", "B"), "baseline_auc_lo": ("F64", "B"),
    "baseline_auc_hi": ("F64", "B"), "baseline_auc_by_seed": ("F64", "SB"),
    "baseline_n_test": ("I64", "SB"), "baseline_sign": ("I8", "SB"),
    "baseline_scores": ("F32", "SBK"), "perm_auc": ("F64", "PK"), "perm_layer": ("I64", "P"),
    # calibration (M: reliability bins)
    "reliability_mean_prob": ("F64", "LPM"), "reliability_observed": ("F64", "LPM"),
    "reliability_count": ("I64", "LPM"),
}
PROBABILITIES = ("baseline_auc", "baseline_auc_lo", "baseline_auc_hi", "baseline_auc_by_seed",
                 "perm_auc", "p_vs_baseline", "q_vs_baseline", "reliability_mean_prob",
                 "reliability_observed")


def best_index(values, lower: bool = False) -> tuple[int, int] | None:
    """(row, col) of the highest finite value (the lowest when ``lower``; the first in row
    order on a tie), or None when no cell has one. ``values``: a numpy array, or
    tensorfile.Cells for the readers that do not load numpy (the same answer, in Python).

    The one definition of "best cell" in probeheat: reports, the viewer and figures use it.
    """
    if not isinstance(values, Cells):
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        values = -values if lower else values
        finite = np.isfinite(values)
        if values.size == 0 or not finite.any():
            return None
        i, j = np.unravel_index(np.argmax(np.where(finite, values, -np.inf)), values.shape)
        return int(i), int(j)
    best, found = None, None
    for i, row in enumerate(values.rows()):
        for j, value in enumerate(row):
            if math.isfinite(value) and (best is None or (value < best if lower else value > best)):
                best, found = value, (i, j)
    return found


def shown_baselines(names: list[str], auc) -> list[tuple[int, str]]:
    """(index, name to show) of the scored baselines, a probability statistic folded into
    its log-probability twin when they order the examples alike (min, max and last always
    do) and so have the same AUC: "(log)prob_min_exact"."""
    out = []
    for k, name in enumerate(names):
        if math.isnan(auc[k]):
            continue
        if name.startswith("prob_") and f"log{name}" in names \
                and auc[names.index(f"log{name}")] == auc[k]:
            continue
        twin = name[len("log"):] if name.startswith("logprob_") else None
        folded = twin in names and auc[names.index(twin)] == auc[k]
        out.append((k, f"(log){twin}" if folded else name))
    return out


@dataclass(frozen=True)
class BestCell:
    row: int
    col: int
    layer: int
    position: str
    value: float


@dataclass(frozen=True)
class Alignment:
    """Shared cells of grids A and B: A's rows/cols and the matching rows/cols of B."""

    rows_a: tuple[int, ...]
    rows_b: tuple[int, ...]
    cols_a: tuple[int, ...]
    cols_b: tuple[int, ...]


@dataclass
class GridValues:
    """A grid's metrics as arrays [layers, positions], with intervals where stored.

    The one in-memory grid result: the probe report, the viewer and figures read it.
    """

    layers: list[int]
    positions: list[str]
    metrics: list[str]
    values: dict[str, np.ndarray]
    intervals: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    spread: dict[str, np.ndarray] = field(default_factory=dict)

    def metric(self, name: str) -> np.ndarray:
        return self.values[name]

    def best_cell(self, metric: str | None = None) -> BestCell | None:
        metric = metric or self.metrics[0]
        values = self.values[metric]
        found = best_index(values, lower=metric in LOWER_IS_BETTER)
        if found is None:
            return None
        i, j = found
        return BestCell(i, j, self.layers[i], self.positions[j],
                        float(self.values[metric][i, j]))

    def align(self, other: GridValues) -> Alignment | None:
        """Cells both grids have (matched by layer number and position name), or None."""
        rows = {layer: i for i, layer in enumerate(other.layers)}
        cols = {pos: j for j, pos in enumerate(other.positions)}
        shared_rows = [(i, rows[x]) for i, x in enumerate(self.layers) if x in rows]
        shared_cols = [(j, cols[p]) for j, p in enumerate(self.positions) if p in cols]
        if not shared_rows or not shared_cols:
            return None
        ra, rb = zip(*shared_rows, strict=True)
        ca, cb = zip(*shared_cols, strict=True)
        return Alignment(ra, rb, ca, cb)

    def diff(self, other: GridValues, metric: str) -> np.ndarray | None:
        """A - B over A's cells, NaN where B lacks the cell; None when nothing is shared."""
        import numpy as np

        aligned = self.align(other)
        if aligned is None:
            return None
        out = np.full((len(self.layers), len(self.positions)), np.nan)
        a = self.values[metric][np.ix_(aligned.rows_a, aligned.cols_a)]
        b = other.values[metric][np.ix_(aligned.rows_b, aligned.cols_b)]
        out[np.ix_(aligned.rows_a, aligned.cols_a)] = a - b
        return out


class GridBundle(Bundle):
    kind = "grid"
    meta_file = GRID_META
    tensors_file = GRID_TENSORS

    def check_meta(self, meta: dict, where: str) -> None:
        check_grid_meta(meta, where)

    @property
    def layers(self) -> list[int]:
        return [int(x) for x in self.require("layers")]

    @property
    def positions(self) -> list[str]:
        return [str(x) for x in self.require("positions")]

    @property
    def metrics(self) -> list[str]:
        return [str(x) for x in self.require("metrics")]

    @property
    def heads(self) -> dict | None:
        """A head grid's ``heads`` (n_heads, head_dim, positions); None for other grids.
        Column j is head ``j % n_heads`` of position ``positions[j // n_heads]``."""
        value = self.meta.get("heads")
        return dict(value) if value else None

    def head_columns(self, position: str) -> list[int]:
        """The columns of one position's heads in a head grid, in head order."""
        heads = self.heads
        if heads is None:
            raise ValueError(f"{self.path} is not a head grid")
        p, H = list(heads["positions"]).index(position), int(heads["n_heads"])
        return list(range(p * H, (p + 1) * H))

    def tensor(self, name: str) -> np.ndarray:
        """A tensor of grid.safetensors, its dtype, shape and values checked against the
        format (FORMAT.md, grid.safetensors) before it is returned."""
        path = self._listed(name)
        with open_tensors(path) as f:
            dtype, shape = self._spec(f, name, path)
            values = get_tensor(f, name, path, dtype, shape)
        check_values(name, values, self.metrics, path)
        return values

    def cells(self, name: str, *, numpy: bool = False):
        """A tensor, read once and checked as ``tensor`` checks it (and, for the first
        metric, every empty cell has its reason): as tensorfile.Cells, without loading
        numpy (what the viewer's first frame reads), or with ``numpy`` as an array."""
        cache = self.__dict__.setdefault("_cells", {})
        if (name, numpy) not in cache:
            if numpy:
                values = self.tensor(name)
            else:
                path = self._listed(name)
                dtype, shape = self._spec(self.header, name, path)
                expect_tensor(self.header, name, path, dtype, shape)
                values = self.header.values(name)
                check_values(name, values, self.metrics, path)
            if name == self.metrics[0]:
                self._check_empty_cells(values)
            cache[(name, numpy)] = values
        return cache[(name, numpy)]

    def _listed(self, name: str) -> Path:
        """grid.safetensors (checksum checked), after ``name`` was found in its header."""
        path = self.member(GRID_TENSORS)
        if name not in self.tensor_names:
            raise UserError(str(path), f"no tensor {name!r}",
                            f"available: {', '.join(self.tensor_names)}")
        return path

    def _spec(self, f, name: str, path: Path) -> tuple[str | None, list | None]:
        """(dtype, shape) FORMAT.md gives a grid tensor; (None, None) for tensors it does not
        name (a reader ignores those)."""
        L, P = len(self.layers), len(self.positions)
        B = len((self.meta.get("baselines") or {}).get("names") or []) or None
        base = name.rsplit("_", 1)[0] if name.endswith(("_lo", "_hi", "_std")) else name
        if base in self.metrics or name in PAIRED:
            return "F64", [L, P]
        if name in EVIDENCE:
            dtype, dims = EVIDENCE[name]
            return dtype, [{"L": L, "P": P, "B": B}.get(d) for d in dims]
        if name.endswith("_by_seed") and name[: -len("_by_seed")] in self.metrics:
            return "F64", [None, L, P]
        if name in COUNT_NAMES:
            return "I64", [L, P]
        if name in ("test_rows", "train_rows"):
            return "I64", [None, None]
        if name == "labels":
            return "I8", [None]
        if name == "scores":
            rows = tensor_header(f, "test_rows", path)[0] if "test_rows" in f.keys() else []
            rows = rows if len(rows) == 2 else [None, None]  # a bad test_rows is its own error
            return "F32", [rows[0], L, P, rows[1]]
        return None, None

    def check_all(self) -> None:
        """Read and check every tensor, and that every empty cell has its reason (verify)."""
        for name in self.tensor_names:
            self.tensor(name)
        if "labels" in self.tensor_names:
            n = len(self.tensor("labels"))
            # a transfer grid's training rows are rows of its train_run, not of its run
            for name in ("test_rows",) + (() if "train_run" in self.meta else ("train_rows",)):
                if name in self.tensor_names and self.tensor(name).max(initial=-1) >= n:
                    raise UserError(str(self.path / GRID_TENSORS), f"{name} points past the "
                                    f"{n} labelled examples", DAMAGED_FIX)
        self.grid_values  # noqa: B018  (empty cells have their reasons)

    def _check_empty_cells(self, values) -> None:
        """Every cell without a value is listed in nan_reasons (when the grid has the list)."""
        if "nan_reasons" not in self.meta:
            return
        listed = set(self.reasons())
        empty = [(i, j) for i, row in enumerate(values.tolist())
                 for j, value in enumerate(row) if math.isnan(value)]
        for i, j in empty:
            if (self.layers[i], self.positions[j]) not in listed:
                raise UserError(str(self.path / GRID_META), f"cell layer {self.layers[i]}, "
                                f"{self.positions[j]} is empty but nan_reasons does not say "
                                "why", DAMAGED_FIX)

    def metric(self, name: str) -> np.ndarray:
        if name not in self.metrics:
            raise UserError(str(self.path), f"unknown metric {name!r}", f"this grid has: {', '.join(self.metrics)}")
        return self.tensor(name).astype("float64")

    def interval(self, name: str) -> tuple[np.ndarray, np.ndarray] | None:
        lo, hi = f"{name}_lo", f"{name}_hi"
        if lo in self.tensor_names and hi in self.tensor_names:
            return self.tensor(lo).astype("float64"), self.tensor(hi).astype("float64")
        return None

    def counts(self) -> dict[str, np.ndarray]:
        return {n: self.tensor(n) for n in COUNT_NAMES if n in self.tensor_names}

    def reasons(self) -> dict[tuple[int, str], str]:
        """Why each NaN cell has no probe, keyed by (layer, position)."""
        out = {}
        for item in self.meta.get("nan_reasons", []):
            out[(int(item["layer"]), str(item["position"]))] = str(item["reason"])
        return out

    def check_headers(self) -> None:
        """Every tensor's dtype and shape against the format, from the header alone."""
        path = self.member(GRID_TENSORS)
        f = self.header
        for name in f.keys():
            dtype, shape = self._spec(f, name, path)
            if dtype is not None:
                expect_tensor(f, name, path, dtype, shape)

    @cached_property
    def grid_values(self) -> GridValues:
        """Every metric with its interval and seed spread, read once (after every tensor
        header was checked)."""
        self.check_headers()
        values, intervals, spread = {}, {}, {}
        for name in self.metrics:
            values[name] = self.metric(name)
            if name == self.metrics[0]:
                self._check_empty_cells(values[name])
            bounds = self.interval(name)
            if bounds is not None:
                intervals[name] = bounds
            if f"{name}_std" in self.tensor_names:
                spread[name] = self.tensor(f"{name}_std").astype("float64")
        return GridValues(self.layers, self.positions, self.metrics, values, intervals, spread)

    def best_cell(self, metric: str = "auc") -> tuple[int, str, float] | None:
        """(layer, position, value) of the best cell (the highest; the lowest for ECE), or
        None when no cell was fitted."""
        if metric not in self.metrics:
            self.metric(metric)  # the one-line error naming the metrics there are
        best = self.grid_values.best_cell(metric)
        return None if best is None else (best.layer, best.position, best.value)

    def scores(self, layer: int, position: str, seed_index: int = 0):
        """(rows into the run's records, test scores, labels with 1 = incorrect) of one cell."""
        i, j = self.layers.index(layer), self.positions.index(position)
        path = self.member(GRID_TENSORS)
        with open_tensors(path) as f:
            scores = f.get_slice("scores")[seed_index, i, j]
            rows = f.get_slice("test_rows")[seed_index]
            labels = get_tensor(f, "labels", path)
        import numpy as np

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
        """The run bundle this grid was made from, if it can be found (else None).

        ``run.path`` is relative to the grid's folder (absolute in grids of format 1.0); a run
        of that folder name beside the grid is tried too, so copying both keeps them linked.
        """
        from . import open_run

        ref = self.run_ref
        recorded = ref.get("path")
        candidates = []
        if isinstance(recorded, str) and recorded:
            candidates = [self.path / recorded, self.path.parent / Path(recorded).name]
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

    def check_meta(self, meta: dict, where: str) -> None:
        check_generalization_meta(meta, where)

    def matrix(self) -> np.ndarray:
        path = self.member(GEN_TENSORS)
        with open_tensors(path) as f:
            values = get_tensor(f, "auc", path, "F64",
                                [len(self.train_names), len(self.test_names)])
        check_values("auc", values, ["auc"], path)
        return values.astype("float64")

    def check_all(self) -> None:
        self.matrix()

    @property
    def train_names(self) -> list[str]:
        return [str(r["name"]) for r in self.require("train_runs")]

    @property
    def test_names(self) -> list[str]:
        return [str(r["name"]) for r in self.require("test_runs")]


def check_values(name: str, values, metrics: list[str], path: Path) -> None:
    """Refuse values the format forbids: infinities in metrics, metrics of [0, 1] outside
    it, labels other than 0/1, negative counts, row numbers below -1. ``values``: a numpy
    array (checked with numpy) or tensorfile.Cells (the same rules in Python)."""
    base = name.rsplit("_", 1)[0] if name.endswith(("_lo", "_hi", "_std")) else name
    base = base.removesuffix("_by_seed")
    if not values.size:
        return
    problem = None
    check = _PYTHON_CHECKS if isinstance(values, Cells) else _numpy_checks()
    values = values.flat if isinstance(values, Cells) else values
    if base in metrics:
        if check["inf"](values):
            problem = "holds infinite values"
        elif base in UNIT_METRICS and not name.endswith("_std") and check["outside"](values):
            problem = "holds values outside [0, 1]"
    elif name in PROBABILITIES and check["outside"](values):
        problem = "holds values outside [0, 1]"
    elif name == "baseline_sign" and check["not_in"](values, (-1, 0, 1)):
        problem = "holds signs other than -1, 0 and 1"
    elif name == "labels" and check["not_in"](values, (0, 1)):
        problem = "holds labels other than 0 and 1"
    elif name in COUNT_NAMES + ("reliability_count",) and check["min"](values) < 0:
        problem = "holds negative counts"
    elif name in ("test_rows", "train_rows") and check["min"](values) < -1:
        problem = "holds row numbers below -1"
    if problem:
        raise UserError(str(path), f"tensor {name!r} {problem}", DAMAGED_FIX)


# The four tests check_values makes, over Python numbers (NaN compares False both ways:
# an empty cell is never outside [0, 1]) and over numpy arrays (for the readers that load
# numpy anyway, on tensors that can be large).
_PYTHON_CHECKS = {
    "inf": lambda flat: any(map(math.isinf, flat)),
    "outside": lambda flat: any(v < 0 or v > 1 for v in flat),
    "not_in": lambda flat, allowed: not set(flat) <= set(allowed),
    "min": min,
}


def _numpy_checks() -> dict:
    import numpy as np

    return {
        "inf": lambda a: bool(np.isinf(a).any()),
        "outside": lambda a: bool(((a < 0) | (a > 1)).any()),
        "not_in": lambda a, allowed: not bool(np.isin(a, allowed).all()),
        "min": lambda a: a.min(),
    }


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
    import numpy as np

    with BundleWriter(out, "generalization", overwrite=overwrite) as writer:
        writer.write_json(GEN_META, {**meta, "id": writer.id})
        writer.write_tensors(GEN_TENSORS, {"auc": np.asarray(auc, dtype=np.float64)})
    return Path(out)
