"""What the viewer shows, computed from bundles with numpy only (no textual here).

Keeping this apart from the widgets lets tests check the numbers without a terminal.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from probeheat.bundle import GridBundle, open_bundle
from probeheat.bundle.grid import COUNT_NAMES, LOWER_IS_BETTER, best_index, shown_baselines
from probeheat.bundle.tensorfile import Cells
from probeheat.errors import UserError
from probeheat.selection import ALL, select_layers, select_positions

if TYPE_CHECKING:
    import numpy as np

# The grid screen reads its cells as Python numbers (GridBundle.cells, tensorfile.Cells): a
# grid is a few thousand of them, and the first frame is drawn before numpy is imported
# (a third of the viewer's start-up). numpy loads on first use: a diff, a cell's detail.
# Grids of more than LIGHT_CELLS cells are read with numpy from the start: its import
# (about 40 ms) costs less than Python loops over every tensor (an 80 x 512 grid opened
# in 85 ms that way, against 15 ms with numpy).
LIGHT_CELLS = 10_000

# Short names for the study's positions, longest first; a column header uses the longest
# one that fits its cell.
KNOWN_ABBREVIATIONS = {
    "last_q": ("last_q", "lq"),
    "first_answer": ("first_ans", "1st_ans", "ans1", "a1"),
    "second_answer": ("second_ans", "2nd_ans", "ans2", "a2"),
    "exact_answer_before_first": ("exact_before", "ex_before", "ex_bef", "ex<", "x<"),
    "exact_answer_first": ("exact_first", "ex_first", "ex_1st", "ex1", "x1"),
    "exact_answer_last": ("exact_last", "ex_last", "exN", "xN"),
    "exact_answer_after_last": ("exact_after", "ex_after", "ex_aft", "ex>", "x>"),
}


def abbreviate(name: str, width: int) -> str:
    """A column header of at most ``width`` characters for a position name."""
    if len(name) <= width:
        return name
    if name.startswith("head ") and name[5:].isdigit():  # a head grid's column
        return (f"h{name[5:]}" if len(name) - 4 <= width else name[5:])[:width]
    for short in KNOWN_ABBREVIATIONS.get(name, ()):
        if len(short) <= width:
            return short
    initials = "".join(part[:1] for part in name.split("_") if part)
    return (initials if len(initials) <= width else name)[:width]


def column_headers(positions: list[str], width: int) -> list[str]:
    """Abbreviated headers, made unique so that no two columns read the same."""
    heads = [abbreviate(p, width) for p in positions]
    seen: dict[str, int] = {}
    for i, head in enumerate(heads):
        if head in seen and positions[seen[head]] != positions[i]:
            suffix = str(i)
            heads[i] = head[: max(0, width - len(suffix))] + suffix
        seen.setdefault(heads[i], i)
    return heads


def head_layout(grid: GridBundle) -> dict | None:
    """A head grid's ``heads`` object, checked against its columns (``POSITION/hH``,
    position-major); None for other grids. A layout that does not match is a UserError."""
    heads = grid.heads
    if heads is None:
        return None
    try:
        n, positions = int(heads["n_heads"]), [str(p) for p in heads["positions"]]
        expected = [f"{p}/h{h}" for p in positions for h in range(n)]
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(str(grid.path / "grid.json"), f"'heads' is not a head layout ({exc})",
                        "probe the run again (probeheat probe --site head)") from None
    if n < 1 or not positions or expected != grid.positions:
        raise UserError(str(grid.path / "grid.json"), "'heads' does not match the grid's "
                        "columns (POSITION/hH, position-major)",
                        "probe the run again (probeheat probe --site head)")
    return {"n_heads": n, "positions": positions}


class GridModel:
    """A grid bundle's arrays, read once and kept (grids are small: L x P floats).

    A head grid (grid.json ``heads``) is shown one position at a time: ``positions`` are
    then that position's heads (``h0``, ``h1``, ...), every array is sliced to their
    columns (``take``), and ``column_name`` gives a shown column's name in the grid
    (``exact_answer_last/h3``); ``set_head_position`` switches position.
    """

    def __init__(self, grid: GridBundle, name: str | None = None):
        self.grid = grid
        self.name = name or grid.path.name
        self.layers = grid.layers
        self.metrics = grid.metrics
        self.heads = head_layout(grid)
        self.light = len(self.layers) * len(grid.positions) <= LIGHT_CELLS
        self.columns: list[int] | None = None
        self.positions = grid.positions
        if self.heads is not None:
            self.set_head_position(self.heads["positions"][0])

    # -- head grids: one position's heads at a time -----------------------------------------

    @property
    def head_position(self) -> str | None:
        return self._head_position if self.heads is not None else None

    def set_head_position(self, position: str) -> None:
        """Show the heads of ``position`` (one of ``heads.positions``)."""
        self._head_position = position
        self.columns = self.grid.head_columns(position)
        self.positions = [f"head {h}" for h in range(self.heads["n_heads"])]

    def take(self, values, axis: int = -1):
        """The shown columns of an array (numpy, or Cells of a matrix) over the grid's
        columns (all of them when the grid is not a head grid)."""
        if self.columns is None:
            return values
        if isinstance(values, Cells):
            if axis not in (-1, 1) or len(values.shape) != 2:
                raise ValueError("Cells: only a matrix's columns are taken")
            return values.take_columns(self.columns)
        import numpy as np

        return np.take(values, self.columns, axis=axis)

    def grid_col(self, col: int) -> int:
        """The grid column of shown column ``col``."""
        return col if self.columns is None else self.columns[col]

    def column_name(self, col: int) -> str:
        """A shown column's name in the grid (a position, or ``POSITION/hH``)."""
        return self.grid.positions[self.grid_col(col)]

    @property
    def column_title(self) -> str:
        """What the columns are, for titles and figure axes."""
        return "Head" if self.heads is not None else "Token"

    # -- values ---------------------------------------------------------------------------

    @property
    def grid_values(self):
        return self.grid.grid_values  # read once by the bundle, shared with the figures

    def values(self, metric: str) -> Cells | np.ndarray:
        if metric not in self.metrics:
            self.grid.metric(metric)  # the one-line error naming the metrics there are
        self._check_headers()
        return self.take(self.grid.cells(metric, numpy=not self.light))

    def read_all(self) -> None:
        """Read (and so check) every tensor the grid screen shows: a damaged grid is then
        a message when it is opened, not a crash when its cursor reaches the damage."""
        for metric in self.metrics:
            self.values(metric)
            for suffix in ("_lo", "_hi", "_std"):
                self._cells(metric + suffix)
        self.counts  # noqa: B018
        self.baselines  # noqa: B018
        self.null  # noqa: B018

    def _check_headers(self) -> None:
        """Every tensor header against the format, once, before any values are used."""
        if not self.__dict__.get("_headers_checked"):
            self.grid.check_headers()
            self._headers_checked = True

    def _cells(self, name: str) -> Cells | np.ndarray | None:
        """A tensor of the grid, as Cells or (a big grid) numpy; None when the grid lacks it."""
        self._check_headers()
        if name not in self.grid.tensor_names:
            return None
        return self.grid.cells(name, numpy=not self.light)

    @cached_property
    def _counts(self) -> dict[str, Cells | np.ndarray]:
        return {name: values for name in COUNT_NAMES
                if (values := self._cells(name)) is not None}

    @property
    def counts(self) -> dict[str, np.ndarray]:
        return {name: self.take(values) for name, values in self._counts.items()}

    @cached_property
    def reasons(self) -> dict[tuple[int, str], str]:
        """Why cells are empty, keyed by (layer, grid column name: ``column_name``)."""
        return self.grid.reasons()

    def interval(self, metric: str, row: int, col: int) -> tuple[float, float] | None:
        bounds = self._cells(f"{metric}_lo"), self._cells(f"{metric}_hi")
        if bounds[0] is None or bounds[1] is None:
            return None
        col = self.grid_col(col)
        lo, hi = float(bounds[0][row, col]), float(bounds[1][row, col])
        return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)

    def lower_is_better(self, metric: str) -> bool:
        """Whether a low value of the metric is good (ECE)."""
        listed = (self.grid.meta.get("calibration") or {}).get("lower_is_better") or []
        return metric in LOWER_IS_BETTER or metric in listed

    def best(self, metric: str) -> tuple[int, int] | None:
        """(row, col) of the best value (the highest; the lowest ECE), or None when every
        cell is NaN."""
        cache = self.__dict__.setdefault("_best", {})
        key = (metric, self.head_position)
        if key not in cache:
            cache[key] = best_index(self.values(metric), lower=self.lower_is_better(metric))
        return cache[key]

    def reliability(self, row: int, col: int) -> list[tuple[float, float, int]]:
        """The cell's reliability curve (first seed's test split): (mean probability,
        observed rate of label 1, count) of each non-empty bin; [] when not stored."""
        names = ("reliability_mean_prob", "reliability_observed", "reliability_count")
        if not all(n in self.grid.tensor_names for n in names):
            return []
        col = self.grid_col(col)
        mean, observed, count = (self.grid.tensor(n)[row, col] for n in names)
        return [(float(m), float(o), int(c)) for m, o, c in zip(mean, observed, count,
                                                                 strict=True) if c > 0]

    def records(self) -> list[dict] | None:
        """The run's per-example records, when the run bundle is still on disk."""
        if not hasattr(self, "_records"):
            run = self.grid.find_run()
            self._records = run.records() if run is not None else None
        return self._records

    @property
    def title(self) -> str:
        meta = self.grid.meta
        if meta.get("title"):
            return str(meta["title"])
        if self.error_type is not None and self.name == self.error_type:  # OUT/<type>/
            return f"{self.grid.path.parent.name}/{self.name}"
        return self.name

    # -- what the probes predict (grid.json ``target`` and ``label``) ---------------------

    @property
    def target(self) -> str:
        return str(self.grid.meta.get("target") or "correct")

    @property
    def error_type(self) -> str | None:
        """The error type a ``--target error-type`` grid predicts (None: errors)."""
        kind, _, name = self.target.partition(":")
        return name if kind == "error-type" and name else None

    @property
    def label(self) -> str:
        """Label 1: "incorrect" (the answer was wrong) or "error type NAME"."""
        fallback = "incorrect" if self.error_type is None else f"error type {self.error_type}"
        return str(self.grid.meta.get("label") or fallback)

    @property
    def predicts(self) -> str:
        """What the cells predict, for the title."""
        return "predicts incorrect answers" if self.error_type is None \
            else f"predicts {self.label}"

    @property
    def tab_name(self) -> str:
        return self.error_type or self.name

    @property
    def label_words(self) -> tuple[str, str]:
        """How an example of label 1 and of label 0 is called."""
        if self.error_type is None:
            return "incorrect", "correct"
        return f"type {self.error_type}", "other"

    # -- the run's sampled answers ----------------------------------------------------------

    def run(self):
        """The run bundle, when it is still on disk (None otherwise)."""
        if not hasattr(self, "_run"):
            self._run = self.grid.find_run()
        return self._run

    def sample_scores(self, layer: int, position: str) -> tuple[np.ndarray, float]:
        """Every sample's log-odds at a cell [n, K] and the refit's largest difference from
        the stored test scores, from the probe refitted there (slow: call from a worker)."""
        from .samples import cannot_score, score_samples

        cache = self.__dict__.setdefault("_sample_scores", {})
        if (layer, position) not in cache:
            run = self.run()
            reason = cannot_score(run, self.grid, layer, position)
            if reason:
                raise UserError(str(self.grid.path), reason, "pick a cell the samples have")
            cache[(layer, position)] = score_samples(run, self.grid, layer, position)
        return cache[(layer, position)]

    def cached_sample_scores(self, layer: int, position: str):
        return self.__dict__.get("_sample_scores", {}).get((layer, position))

    def steers(self, root: Path | None = None) -> list:
        """Steer bundles made from this grid (any cell), beside it or under ``root``."""
        if not hasattr(self, "_steers"):
            from .samples import find_steers

            self._steers = find_steers(self.grid.id, steer_roots(self.grid.path, root))
        return self._steers

    def spread(self, metric: str, row: int, col: int) -> float | None:
        """The spread over seeds of a cell (None with one seed)."""
        std = self._cells(f"{metric}_std")
        seeds = (self.grid.meta.get("probe") or {}).get("seeds") or []
        col = self.grid_col(col)
        if std is None or len(seeds) < 2 or math.isnan(std[row, col]):
            return None
        return float(std[row, col])

    @cached_property
    def baselines(self) -> list[tuple[str, float, float, float, int]]:
        """(name, AUC, lo, hi, n) of every scored baseline, best first."""
        grid = self.grid
        if "baseline_auc" not in grid.tensor_names:
            return []
        auc, lo, hi = (self._cells(f"baseline_auc{s}") for s in ("", "_lo", "_hi"))
        n = self._cells("baseline_n_test")[0]
        names = (grid.meta.get("baselines") or {}).get("names", [])
        rows = [(shown, float(auc[k]), float(lo[k]), float(hi[k]), int(n[k]))
                for k, shown in shown_baselines(names, auc)]
        return sorted(rows, key=lambda r: -r[1])

    @cached_property
    def _null(self) -> tuple[list[float], list[float]] | None:
        perm = self._cells("perm_auc")
        if perm is None:
            return None
        rows = [sorted(v for v in row if math.isfinite(v)) for row in perm.tolist()]
        median = [percentile(v, 50) for v in rows]
        p95 = [percentile(v, 95) for v in rows]
        return median, p95

    @property
    def null(self) -> tuple[list[float], list[float]] | None:
        """(median, 95th percentile) of the permutation null per shown column (NaN: none)."""
        found = self._null
        if found is None or self.columns is None:
            return found
        return [found[0][j] for j in self.columns], [found[1][j] for j in self.columns]

    def stored(self, name: str) -> np.ndarray | None:
        """A per-cell tensor the grid may hold (p_vs_baseline, q_vs_baseline, ...)."""
        return self.take(self.grid.tensor(name)) if name in self.grid.tensor_names else None

    def comparison(self, other: GridModel):
        """Cell-by-cell tests of this grid minus another (probeheat.probe.compare), cached."""
        cache = self.__dict__.setdefault("_comparisons", {})
        key = str(other.grid.path.resolve())
        if key not in cache:
            from probeheat.probe.compare import compare

            cache[key] = compare(self.grid, other.grid)
        return cache[key]


def steer_roots(grid_path: Path, root: Path | None) -> list[Path]:
    """Where a grid's steer bundles are looked for: the folder above the grid's (above a
    type folder's for an error-type grid: artifacts/grids/X -> artifacts/) and ``root``."""
    parent = Path(grid_path).resolve().parent
    if type_grid_folder(parent):
        parent = parent.parent
    out: list[Path] = []
    for folder in (parent.parent, root):
        if folder is not None and Path(folder).is_dir() and \
                Path(folder).resolve() not in [f.resolve() for f in out]:
            out.append(Path(folder))
    return out


def type_grid_folder(path: Path, dirs: list[str] | None = None) -> list[Path]:
    """The grids of a ``probe --target error-type`` folder (``OUT/<type>/``, each a grid
    whose target is that type), in the paper's order; [] for any other folder."""
    from probeheat.data.error_types import ALL_NAMES, PAPER_TYPES

    path = Path(path)
    if (path / "manifest.json").exists():
        return []
    try:
        names = dirs if dirs is not None else [d.name for d in path.iterdir() if d.is_dir()]
    except OSError:
        return []
    if not any(d in ALL_NAMES for d in names):
        return []
    grids = [path / d for d in names if (path / d / "manifest.json").is_file()]
    if not grids or any(g.name not in ALL_NAMES for g in grids):
        return []
    for grid in grids:
        try:
            bundle = open_bundle(grid)
            if bundle.kind != "grid" or bundle.meta.get("target") != f"error-type:{grid.name}":
                return []
        except UserError:
            return []
    order = PAPER_TYPES + tuple(n for n in ALL_NAMES if n not in PAPER_TYPES)  # A-E first
    return sorted(grids, key=lambda g: order.index(g.name))


def percentile(ordered: list[float], q: float) -> float:
    """The q-th percentile of sorted values, as numpy's default ("linear") computes it;
    NaN for no values."""
    if not ordered:
        return math.nan
    at = q / 100 * (len(ordered) - 1)
    i = min(int(at), len(ordered) - 1)
    a, b, t = ordered[i], ordered[min(i + 1, len(ordered) - 1)], at - i
    return b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t  # numpy's _lerp


def diff_values(a: GridModel, b: GridModel, metric: str) -> np.ndarray:
    """A - B over A's cells; cells B lacks (other layers or positions) are NaN."""
    if metric not in b.metrics:
        raise UserError(str(b.grid.path), f"has no metric {metric!r}",
                        f"pick a grid with {metric}, or switch metric with m")
    out = a.grid_values.diff(b.grid_values, metric)
    if out is None:
        raise UserError(str(b.grid.path), "shares no layer and position with this grid",
                        "compare grids of the same model and positions")
    return a.take(out)


def match_jump(text: str, layers: list[int], positions: list[str]) -> tuple[str, int] | None:
    """Where ``/text`` goes: ("row", i) for a layer number, ("col", j) for a position name.

    A position named exactly wins (positions such as "-1" look like numbers); then a layer
    number; then the first position starting with the text; then one containing it.
    """
    text = text.strip()
    if not text or "," in text or ":" in text or text in ALL:
        return None
    for kind, select, names, item in (("col", select_positions, positions, text),
                                      ("row", select_layers, layers, text.lstrip("L"))):
        try:
            return kind, names.index(select(item, names)[0])
        except UserError:
            pass  # not an exact name of this kind
    lowered = text.lower()
    for test in (str.startswith, str.__contains__):
        for j, pos in enumerate(positions):
            if test(pos.lower(), lowered):
                return "col", j
    return None


def match_head_jump(text: str, layers: list[int], heads: dict) -> tuple[str, object] | None:
    """Where ``/text`` goes in a head grid: ("col", h) for a head number (``3`` or ``h3``),
    ("row", i) for a layer (``L2``), ("position", name) for one of the grid's positions
    (exact name, then prefix); None when nothing matches."""
    text = text.strip()
    lowered = text.lower()
    number = lowered.removeprefix("h")
    if number.isdigit() and int(number) < heads["n_heads"]:
        return "col", int(number)
    if lowered.startswith("l") and lowered[1:].isdigit() and int(lowered[1:]) in layers:
        return "row", layers.index(int(lowered[1:]))
    positions = heads["positions"]
    if text in positions:
        return "position", text
    for test in (str.startswith, str.__contains__):
        for name in positions:
            if lowered and test(name.lower(), lowered):
                return "position", name
    return None


# -- bundles under a folder ---------------------------------------------------------------

@dataclass
class BundleEntry:
    """One row of the browser: a bundle, or a folder that failed to open as one."""

    path: Path
    name: str
    kind: str = "?"
    model: str = ""
    dataset: str = ""
    examples: str = ""
    accuracy: str = ""
    best: str = ""
    date: str = ""
    error: str | None = None
    bundle: object | None = field(default=None, repr=False)
    note: str = ""  # what the status line says of it (runs still being written)


def _label(value: object) -> str:
    if isinstance(value, dict):
        for key in ("name", "model_id", "id", "path"):
            if value.get(key):
                return str(value[key])
        return ""
    return "" if value is None else str(value)


def _accuracy(correct: float, total: float) -> str:
    return f"{correct / total:.1%}" if total else ""


def describe(path: Path, name: str) -> BundleEntry:
    """Open a bundle and summarise it for the browser; a broken one keeps its error line."""
    entry = BundleEntry(path=path, name=name)
    try:
        bundle = open_bundle(path)
        entry.bundle, entry.kind = bundle, bundle.kind
        entry.date = str(bundle.manifest.get("created", ""))[:16].replace("T", " ")
        meta = bundle.meta
        entry.model, entry.dataset = _label(meta.get("model")), _label(meta.get("dataset"))
        if bundle.kind == "run":
            n = int(meta.get("n_examples", 0))
            entry.examples = str(n)
            entry.accuracy = _accuracy(float(meta.get("n_correct", 0)), n)
        elif bundle.kind == "grid":
            _describe_grid(bundle, entry)
        elif bundle.kind in ("selection", "steer"):
            entry.examples = str(int(meta["questions"]["n"]))
            entry.best = f"L{meta['cell']['layer']} {meta['cell']['position']}"
            if bundle.kind == "selection":  # the probe's choice, as run's accuracy is greedy's
                entry.accuracy = f"{float(meta['table']['probe']['accuracy']):.1%}"
    except UserError as exc:
        entry.kind, entry.error = "error", exc.line()
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        # metadata of the right shape on disk but not the content a viewer expects
        entry.kind, entry.error = "error", f"{path}: unreadable metadata ({exc!r})"
    return entry


def _describe_grid(grid: GridBundle, entry: BundleEntry) -> None:
    if "labels" in grid.tensor_names:
        labels = grid.tensor("labels")
        entry.examples = str(len(labels))
        entry.accuracy = _accuracy(float((labels == 0).sum()), len(labels))
    metric = "auc" if "auc" in grid.metrics else grid.metrics[0]
    best = grid.best_cell(metric)
    if best is not None:
        entry.best = f"{best[2]:.3f} L{best[0]} {best[1]}"


def find_bundles(root: Path) -> list[BundleEntry]:
    """Every bundle under root (itself included), skipping unfinished and hidden folders.

    ``*.partial`` folders are runs still being written and ``.name.tmp-*`` folders are
    bundles being published; neither is a bundle yet.
    """
    found = []
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(".partial"))
        name = here.relative_to(root).as_posix() if here != root else here.name
        if "manifest.json" in files:
            dirs[:] = []  # a bundle's own sub-folders (shards/) are not bundles
            found.append(describe(here, name))
        elif grids := type_grid_folder(here, dirs):
            dirs[:] = []  # one row for the folder: Enter opens its grids as tabs
            found.append(describe_types(here, name, grids))
    return found


def describe_types(path: Path, name: str, grids: list[Path]) -> BundleEntry:
    """A browser row for a folder of error-type grids (``probe --target error-type``)."""
    entries = [describe(g, g.name) for g in grids]
    bad = next((e for e in entries if e.error), None)
    if bad is not None:
        return BundleEntry(path=path, name=name, kind="error", error=bad.error)
    first = entries[0]
    return BundleEntry(path=path, name=name, kind="types", model=first.model,
                       dataset=first.dataset, examples=first.examples,
                       best=f"{len(grids)} type grids", date=first.date,
                       bundle=[e.bundle for e in entries],
                       note=f"{name}: error-type grids ({', '.join(g.name for g in grids)}); "
                            "Enter opens them as tabs")


# -- one cell in detail ---------------------------------------------------------------------

@dataclass
class Example:
    score: float
    label: int  # 1 = the model's answer was incorrect (or: the question has the error type)
    question: str
    answer: str
    row: int = -1  # the run row
    record: dict | None = field(default=None, repr=False)


@dataclass
class CellDetail:
    layer: int
    position: str
    values: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    counts: dict[str, int]
    reason: str | None
    highest: list[Example] = field(default_factory=list)
    lowest: list[Example] = field(default_factory=list)
    examples_note: str | None = None  # why no examples are shown
    spread: float | None = None  # of the default metric over seeds
    tests: list[tuple[str, float, float | None]] = field(default_factory=list)  # (vs, Δ, p)
    words: tuple[str, str] = ("incorrect", "correct")  # label 1 and label 0 (label_words)
    error_type: str | None = None  # what an error-type grid predicts
    ranked: list[Example] = field(default_factory=list)  # runs with samples: every test
    # example of the cell, highest score first (the detail's table filters them by type)
    reliability: list[tuple[float, float, int]] = field(default_factory=list)  # per bin:
    # (mean probability, observed rate of label 1, count), first seed's test split
    lower: tuple[str, ...] = ()  # metrics for which lower is better (ECE)


def cell_detail(model: GridModel, row: int, col: int, k: int = 5) -> CellDetail:
    layer, position = model.layers[row], model.column_name(col)
    values = {m: float(model.values(m)[row, col]) for m in model.metrics}
    intervals = {m: iv for m in model.metrics if (iv := model.interval(m, row, col))}
    counts = {name: int(arr[row, col]) for name, arr in model.counts.items()}
    detail = CellDetail(layer, position, values, intervals, counts,
                        model.reasons.get((layer, position)), words=model.label_words,
                        error_type=model.error_type)
    detail.spread = model.spread(model.metrics[0], row, col)
    detail.lower = tuple(m for m in model.metrics if model.lower_is_better(m))
    try:
        detail.reliability = model.reliability(row, col)
        _add_examples(model, detail, k)
        detail.tests = paired_tests(model, row, col)
    except UserError as exc:
        detail.examples_note = exc.line()
    return detail


def paired_tests(model: GridModel, row: int, col: int) -> list[tuple[str, float, float | None]]:
    """The cell against the best baseline (stored), its position at layer 0 and the best
    cell: (against what, AUC difference, paired DeLong p on shared test examples)."""
    from probeheat.probe.report import cell_scores, paired_p

    out = []
    value = float(model.values("auc")[row, col]) if "auc" in model.metrics else math.nan
    p, delta = model.stored("p_vs_baseline"), model.stored("delta_vs_baseline")
    if p is not None and model.baselines and not math.isnan(value):
        best = (model.grid.meta.get("baselines") or {}).get("best", "best baseline")
        out.append((f"best baseline ({best})", float(delta[row, col]), _finite(p[row, col])))
    grid = model.grid
    if math.isnan(value) or "scores" not in grid.tensor_names:
        return out
    labels = grid.tensor("labels").astype("int64")
    rows, here = cell_scores(grid, row, model.grid_col(col))
    others = []
    if 0 in model.layers and model.layers[row] != 0:
        others.append((f"layer 0 {model.column_name(col)}", model.layers.index(0), col))
    best = model.best("auc")
    if best is not None and best != (row, col):
        others.append((f"best cell L{model.layers[best[0]]} {model.column_name(best[1])}",
                       *best))
    for name, r, c in others:
        _, theirs = cell_scores(grid, r, model.grid_col(c))
        out.append((name, value - float(model.values("auc")[r, c]),
                    paired_p(labels, rows, here, theirs)))
    return out


def _finite(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _add_examples(model: GridModel, detail: CellDetail, k: int) -> None:
    if "scores" not in model.grid.tensor_names:
        detail.examples_note = "this grid kept no per-example scores"
        return
    rows, scores, labels = model.grid.scores(detail.layer, detail.position)
    if not len(rows):
        detail.examples_note = "no test scores for this cell"
        return
    records = model.records()
    if records is None:
        where = model.grid.run_ref.get("path") or "its run bundle"
        detail.examples_note = f"run bundle not found ({where}): questions and answers unavailable"
        return
    order = (-scores).argsort(kind="stable")

    def pick(indices) -> list[Example]:
        out = []
        for i in indices:
            rec = records[int(rows[i])] if int(rows[i]) < len(records) else {}
            out.append(Example(float(scores[i]), int(labels[i]), str(rec.get("question", "?")),
                               str(rec.get("answer", "?")).strip(), int(rows[i]), rec))
        return out

    detail.highest = pick(order[:k])
    detail.lowest = pick(order[::-1][:k])
    if any(isinstance(r.get("error_type"), dict) for r in records):
        detail.ranked = pick(order)
