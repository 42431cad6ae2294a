"""probeheat in a notebook: ``probeheat.open(path)`` gives a `Run`, a `Grid` or a
`Generalization`.

    grid = probeheat.open("runs/grid")
    df = grid.to_pandas()     # tidy: layer, position, metric, value, lo, hi, n, spread, reason
    run = grid.run()          # the run the grid was made from (or probeheat.open(run_path))
    x, ids = run.activations(layer=12, position="exact_answer_last")

The objects wrap the bundles (``.bundle``) and read as lazily as they do: opening reads only
the manifest, ``activations`` one layer's tensors. pandas is optional: only the methods that
return a DataFrame need it (``pip install pandas``). ``write`` (and ``probeheat export GRID
-o grid.csv|grid.json|grid.parquet``) writes the tidy table: csv and json with the standard
library, parquet with pyarrow.

**Run.records()**: one row per example, index ``row`` (row r = the record whose ``index`` is
r), one column per record key in the format's order (unknown keys after), with three keys
flattened: ``positions`` into ``pos.<name>`` (nullable Int64, <NA> where the position is
missing) and ``missing`` into ``missing.<name>`` (the reason, None where present), one of each
per run position; ``p_true`` into ``p_true_answer`` and ``p_true_exact`` (float, NaN where
null). List keys (``answers``, ``exact_span``, ``clamped``, ``generated_ids``,
``token_logprobs``) stay Python lists; keys a record lacks are None/NaN.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from .atomic import write_atomically
from .bundle import Bundle, open_bundle
from .bundle.records import Record
from .errors import UserError
from .progress import counted

TABLE_COLUMNS = ("layer", "position", "metric", "value", "lo", "hi", "n", "spread", "reason")
GEN_COLUMNS = ("train", "test", "metric", "value", "lo", "hi", "n")
BASELINE_COLUMNS = ("name", "auc", "lo", "hi", "n_test", "absent", "description")
TABLE_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet"}
P_TRUE_COLUMNS = {"answer": "p_true_answer", "exact_answer": "p_true_exact"}
_STRINGS = ("position", "metric", "reason", "train", "test", "name", "absent", "description")
_INTS = ("layer", "n", "n_test")
NAN = float("nan")


def need_pandas(where: str):
    """The pandas module, or one line saying how to get it."""
    try:
        import pandas
    except ImportError:
        raise UserError(where, "needs pandas, which is not installed",
                        "pip install pandas") from None
    return pandas


def need_pyarrow(where: str):
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UserError(where, "writing parquet needs pyarrow, which is not installed",
                        "pip install pyarrow, or write .csv or .json") from None
    return pyarrow


def _float(value) -> float:
    return NAN if value is None else float(value)


class _View:
    """What every bundle object has: the bundle, its folder, its metadata."""

    def __init__(self, bundle: Bundle):
        self.bundle = bundle

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def meta(self) -> dict:
        return self.bundle.meta

    @property
    def id(self) -> str:
        return self.bundle.id

    def describe(self) -> str:
        return ""

    def __repr__(self) -> str:
        try:
            detail = self.describe()
        except UserError as exc:  # a damaged bundle still has a repr
            detail = f"unreadable: {exc}"
        detail = f": {detail}" if detail else ""
        return f"<probeheat {type(self).__name__} {self.id!r} at {self.path}{detail}>"


class Run(_View):
    """A run bundle: graded answers and hidden states per layer and position."""

    @property
    def positions(self) -> list[str]:
        return self.bundle.positions

    @property
    def layers(self) -> list[int]:
        return self.bundle.layers

    @property
    def sites(self) -> dict[str, list[int]]:
        return self.bundle.sites

    @property
    def n_examples(self) -> int:
        return self.bundle.n_examples

    def describe(self) -> str:
        n, correct = self.n_examples, int(self.meta.get("n_correct", 0))
        accuracy = f" (accuracy {correct / n:.2f})" if n else ""
        sites = ", ".join(f"{len(v)} {k}" for k, v in self.sites.items())
        return (f"model {self.bundle.model_id or '?'}, {counted(n, 'example')}{accuracy}, "
                f"layers {sites}, "
                f"{len(self.positions)} positions, d={self.bundle.hidden_size} {self.bundle.dtype}")

    def records(self):
        """The records as a DataFrame, one row per example (see the module's docstring)."""
        pd = need_pandas("Run.records()")
        columns = record_columns(self.bundle.records(), self.positions)
        for name, values in columns.items():
            if name.startswith("pos."):
                columns[name] = pd.array(values, dtype="Int64")
        rows = len(self.bundle.records())
        return pd.DataFrame(columns, index=pd.RangeIndex(rows, name="row"))

    def labels(self, rows=None) -> np.ndarray:
        """1 where the answer was wrong, 0 where right: by row, or of the given rows."""
        labels = self.bundle.labels()
        return labels if rows is None else labels[np.asarray(rows, dtype=np.int64)]

    def activations(self, layer: int, position: str | int, site: str = "resid", *,
                    rows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(hidden states [n, d] float32 of the examples that have ``position`` at ``layer``,
        their ids) in row order; ``rows=True`` gives their row numbers instead of the ids.

        Reads only that layer's tensor of each shard."""
        column = self._column(position)
        x, mask = self.bundle.read_layer(self._layer(layer), str(site))
        have = np.flatnonzero(mask[:, column])
        values = np.ascontiguousarray(x[have, column], dtype=np.float32)
        if rows:
            return values, have.astype(np.int64)
        records = self.bundle.records()
        return values, np.array([records[r]["id"] for r in have], dtype=object)

    def _layer(self, layer) -> int:
        try:
            number = int(layer.strip()) if isinstance(layer, str) else int(layer)
            ok = not isinstance(layer, bool) and (isinstance(layer, str) or number == layer)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(str(self.path), f"layer {layer!r} is not a layer number",
                            f"layers here: {self.layers}")
        return number

    def _column(self, position) -> int:
        name = str(position)
        if name not in self.positions:
            raise UserError(str(self.path), f"run has no position {name!r}",
                            f"positions here: {', '.join(self.positions)}")
        return self.positions.index(name)


def _names(records: list[Record], key: str, first: list[str]) -> list[str]:
    """``first``, then any other name the records' ``key`` objects use, in first-seen order."""
    names = dict.fromkeys(first)
    for record in records:
        value = record.get(key)
        if isinstance(value, dict):
            names.update(dict.fromkeys(value))
    return list(names)


def record_columns(records: list[Record], positions: list[str]) -> dict[str, list]:
    """Column name -> values, one per record (row order), as Run.records() documents."""
    keys = dict.fromkeys(k for k in Record.__annotations__ if any(k in r for r in records))
    for record in records:
        keys.update(dict.fromkeys(record))
    columns: dict[str, list] = {}
    for key in keys:
        if key in ("positions", "missing"):
            prefix = "pos" if key == "positions" else "missing"
            for name in _names(records, key, positions):
                columns[f"{prefix}.{name}"] = [(r.get(key) or {}).get(name) for r in records]
        elif key == "p_true":
            for name in _names(records, key, list(P_TRUE_COLUMNS)):
                column = P_TRUE_COLUMNS.get(name, f"p_true_{name}")
                columns[column] = [_float((r.get(key) or {}).get(name)) for r in records]
        else:
            columns[key] = [r.get(key) for r in records]
    return columns


class Grid(_View):
    """A grid bundle: probe metrics per (layer, position), with intervals, seeds, baselines."""

    @property
    def layers(self) -> list[int]:
        return self.bundle.layers

    @property
    def positions(self) -> list[str]:
        return self.bundle.positions

    @property
    def metrics(self) -> list[str]:
        return self.bundle.metrics

    def describe(self) -> str:
        seeds = (self.meta.get("probe") or {}).get("seeds") or []
        text = (f"{len(self.layers)} layers x {len(self.positions)} positions, metrics "
                f"{', '.join(self.metrics)}, {len(seeds) or '?'} seed(s)")
        best = self.best_cell()
        if best is not None:
            text += f"; best {self.metrics[0]} {best.value:.3f} at layer {best.layer}, " \
                    f"{best.position}"
        return text

    def best_cell(self, metric: str | None = None):
        """The highest cell (``.layer``, ``.position``, ``.value``), or None when none was fitted."""
        metric = metric or self.metrics[0]
        if metric not in self.metrics:
            self.bundle.metric(metric)  # the one-line error naming the metrics there are
        return self.bundle.grid_values.best_cell(metric)

    def table(self) -> dict[str, list]:
        """The tidy table as columns of plain Python values (what to_pandas and write use)."""
        return grid_table(self.bundle)

    def to_pandas(self):
        """One row per (layer, position, metric): layer, position, metric, value, lo, hi
        (the interval, where the metric has one), n (n_test), spread (std over seeds, where
        stored) and reason (why an empty cell has no value); NaN/None where not applicable."""
        return need_pandas("Grid.to_pandas()").DataFrame(self.table())

    def baselines(self):
        """The baselines: name, auc, lo, hi (DeLong interval), n_test (first seed), absent (why
        a baseline has no score, else None), description. A grid without any baselines gives
        no rows, with the reason in ``.attrs["absent"]``."""
        pd = need_pandas("Grid.baselines()")
        columns, absent = baseline_table(self.bundle)
        frame = pd.DataFrame(columns)
        if absent is not None:
            frame.attrs["absent"] = absent
        return frame

    def run(self) -> Run:
        """The run this grid was made from (found by its recorded path, or beside the grid)."""
        bundle = self.bundle.find_run()
        if bundle is None:
            ref = self.bundle.run_ref
            raise UserError(str(self.path), f"cannot find its run {ref.get('id', '?')!r} at "
                            f"{ref.get('path', '?')!r}", "open the run with probeheat.open(path)")
        return Run(bundle)

    def write(self, path: str | Path) -> Path:
        """Write the tidy table to a .csv, .json or .parquet file (atomically)."""
        return write_table(self.table(), path)


def grid_table(grid) -> dict[str, list]:
    """Grid.to_pandas()'s columns: one entry per (layer, position, metric), in that order."""
    values = grid.grid_values
    n_test = grid.counts().get("n_test")
    reasons = grid.reasons()
    columns: dict[str, list] = {name: [] for name in TABLE_COLUMNS}
    for i, layer in enumerate(values.layers):
        for j, position in enumerate(values.positions):
            for metric in values.metrics:
                value = float(values.values[metric][i, j])
                bounds = values.intervals.get(metric)
                spread = values.spread.get(metric)
                row = (layer, position, metric, value,
                       float(bounds[0][i, j]) if bounds else NAN,
                       float(bounds[1][i, j]) if bounds else NAN,
                       NAN if n_test is None else int(n_test[i, j]),
                       NAN if spread is None else float(spread[i, j]),
                       reasons.get((layer, position)) if math.isnan(value) else None)
                for name, item in zip(TABLE_COLUMNS, row, strict=True):
                    columns[name].append(item)
    return columns


def baseline_table(grid) -> tuple[dict[str, list], str | None]:
    """Grid.baselines()'s columns, and why there are none (None when the grid has them)."""
    info = grid.meta.get("baselines") or {}
    columns: dict[str, list] = {name: [] for name in BASELINE_COLUMNS}
    absent = info.get("absent")
    if not isinstance(absent, dict):
        return columns, str(absent or "the grid names no baselines")
    if "baseline_auc" not in grid.tensor_names:
        return columns, "the grid stores no baseline scores"
    auc, lo, hi = (grid.tensor(f"baseline_auc{s}") for s in ("", "_lo", "_hi"))
    n_test = grid.tensor("baseline_n_test")
    names = [str(n) for n in info.get("names") or []]
    descriptions = info.get("descriptions") or {}
    for k, name in enumerate(names + [n for n in absent if n not in names]):
        scored = k < len(names)
        row = (name, float(auc[k]) if scored else NAN, float(lo[k]) if scored else NAN,
               float(hi[k]) if scored else NAN,
               int(n_test[0, k]) if scored and n_test.shape[0] else NAN,
               absent.get(name), descriptions.get(name))
        for column, item in zip(BASELINE_COLUMNS, row, strict=True):
            columns[column].append(item)
    return columns, None


class Generalization(_View):
    """A generalization bundle: AUC of probes trained on one run and tested on another."""

    @property
    def train_names(self) -> list[str]:
        return self.bundle.train_names

    @property
    def test_names(self) -> list[str]:
        return self.bundle.test_names

    def describe(self) -> str:
        return f"{len(self.train_names)} train x {len(self.test_names)} test runs"

    def matrix(self):
        """The AUC matrix as a DataFrame: index = train runs, columns = test runs."""
        pd = need_pandas("Generalization.matrix()")
        return pd.DataFrame(self.bundle.matrix(), index=pd.Index(self.train_names, name="train"),
                            columns=pd.Index(self.test_names, name="test"))

    def table(self) -> dict[str, list]:
        """One entry per (train, test) pair: train, test, metric (auc), value, lo, hi, n."""
        auc = self.bundle.matrix()
        extra = [self.meta.get(k) for k in ("auc_lo", "auc_hi", "n_test")]
        columns: dict[str, list] = {name: [] for name in GEN_COLUMNS}
        for a, train in enumerate(self.train_names):
            for b, test in enumerate(self.test_names):
                lo, hi, n = (_entry(m, a, b) for m in extra)
                row = (train, test, "auc", float(auc[a, b]), _float(lo), _float(hi),
                       NAN if n is None else int(n))
                for name, item in zip(GEN_COLUMNS, row, strict=True):
                    columns[name].append(item)
        return columns

    def to_pandas(self):
        """The tidy table: one row per (train run, test run)."""
        return need_pandas("Generalization.to_pandas()").DataFrame(self.table())

    def write(self, path: str | Path) -> Path:
        return write_table(self.table(), path)


def _entry(matrix, a: int, b: int):
    """matrix[a][b] of a JSON matrix, None where it has no such entry or no number."""
    try:
        value = matrix[a][b]
    except (TypeError, IndexError, KeyError):
        return None
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


VIEWS: dict[str, type[_View]] = {"run": Run, "grid": Grid, "generalization": Generalization}


def open(path: str | Path | Bundle) -> Run | Grid | Generalization:  # noqa: A001
    """Open a bundle folder (or wrap an open bundle): a Run, a Grid or a Generalization.

    Reads only manifest.json; anything that is not a sound bundle is one UserError line."""
    bundle = path if isinstance(path, Bundle) else open_bundle(path)
    view = VIEWS.get(bundle.kind)
    if view is None:  # steer and selection bundles: read through the bundle itself
        raise UserError(str(bundle.path), f"is a {bundle.kind} bundle, which has no tidy "
                        "table view", "use probeheat.bundle.open_bundle(path) for its "
                        "metadata and tensors, or `probeheat export` for its figure"
                        if bundle.kind == "steer" else
                        "use probeheat.bundle.open_bundle(path) for its metadata and tensors")
    return view(bundle)


# ---------------------------------------------------------------- writing tables


def table_format(out: str | Path, where: str = "-o") -> str:
    """'csv' | 'json' | 'parquet' from the file name, after the folder can take the file (and
    pyarrow is there, for parquet): checked before any bundle is read."""
    out = Path(out)
    fmt = TABLE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UserError(where, f"unsupported table extension {out.suffix or '(none)'!r} in "
                        f"{out}", "name the file .csv, .json or .parquet")
    if out.is_dir():
        raise UserError(str(out), "is a folder", f"name a file inside it, e.g. grid.{fmt}")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(str(out), f"folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(str(out), f"folder {folder} is not writable", "choose another path")
    if fmt == "parquet":
        need_pyarrow(str(out))
    return fmt


def write_table(columns: dict[str, list], out: str | Path, where: str = "-o") -> Path:
    """Write a table (column -> values) as csv, json or parquet, picked by the extension,
    through a temporary file beside ``out`` and a rename."""
    out = Path(out)
    fmt = table_format(out, where)
    writer = {"csv": _write_csv, "json": _write_json, "parquet": _write_parquet}[fmt]
    write_atomically(out, lambda handle: writer(columns, handle))
    return out


def _plain(value):
    """A JSON/CSV value: NaN (and None) become None, numpy scalars Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _write_csv(columns: dict[str, list], handle) -> None:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    for row in zip(*columns.values(), strict=True):
        writer.writerow(["" if (v := _plain(x)) is None else v for x in row])
    handle.write(text.getvalue().encode("utf-8"))


def _write_json(columns: dict[str, list], handle) -> None:
    names = list(columns)
    rows = [json.dumps(dict(zip(names, map(_plain, row), strict=True)), ensure_ascii=False,
                       allow_nan=False) for row in zip(*columns.values(), strict=True)]
    handle.write(("[\n" + ",\n".join(rows) + "\n]\n" if rows else "[]\n").encode("utf-8"))


def _write_parquet(columns: dict[str, list], handle) -> None:
    import pyarrow as pa  # table_format checked that it is there
    import pyarrow.parquet as pq

    def kind(name: str):
        return pa.string() if name in _STRINGS else pa.int64() if name in _INTS \
            else pa.float64()

    arrays = {name: pa.array([_plain(v) for v in values], type=kind(name))
              for name, values in columns.items()}
    pq.write_table(pa.table(arrays), handle)
