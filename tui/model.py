"""What the viewer shows, computed from bundles with numpy only (no textual here).

Keeping this apart from the widgets lets tests check the numbers without a terminal.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from probeheat.bundle import GridBundle, open_bundle
from probeheat.bundle.grid import best_index
from probeheat.errors import UserError
from probeheat.selection import ALL, select_layers, select_positions

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


class GridModel:
    """A grid bundle's arrays, read once and kept (grids are small: L x P floats)."""

    def __init__(self, grid: GridBundle, name: str | None = None):
        self.grid = grid
        self.name = name or grid.path.name
        self.layers = grid.layers
        self.positions = grid.positions
        self.metrics = grid.metrics

    @property
    def grid_values(self):
        return self.grid.grid_values  # read once by the bundle, shared with the figures

    def values(self, metric: str) -> np.ndarray:
        if metric not in self.metrics:
            self.grid.metric(metric)  # the one-line error naming the metrics there are
        return self.grid_values.metric(metric)

    @cached_property
    def counts(self) -> dict[str, np.ndarray]:
        return self.grid.counts()

    @cached_property
    def reasons(self) -> dict[tuple[int, str], str]:
        return self.grid.reasons()

    def interval(self, metric: str, row: int, col: int) -> tuple[float, float] | None:
        bounds = self.grid_values.intervals.get(metric)
        if bounds is None:
            return None
        lo, hi = float(bounds[0][row, col]), float(bounds[1][row, col])
        return None if math.isnan(lo) or math.isnan(hi) else (lo, hi)

    def best(self, metric: str) -> tuple[int, int] | None:
        """(row, col) of the highest value, or None when every cell is NaN."""
        return best_index(self.values(metric))

    def records(self) -> list[dict] | None:
        """The run's per-example records, when the run bundle is still on disk."""
        if not hasattr(self, "_records"):
            run = self.grid.find_run()
            self._records = run.records() if run is not None else None
        return self._records

    @property
    def title(self) -> str:
        meta = self.grid.meta
        return str(meta.get("title") or self.name)

    def spread(self, metric: str, row: int, col: int) -> float | None:
        """The spread over seeds of a cell (None with one seed)."""
        std = self.grid_values.spread.get(metric)
        seeds = (self.grid.meta.get("probe") or {}).get("seeds") or []
        if std is None or len(seeds) < 2 or math.isnan(std[row, col]):
            return None
        return float(std[row, col])

    @cached_property
    def baselines(self) -> list[tuple[str, float, float, float, int]]:
        """(name, AUC, lo, hi, n) of every scored baseline, best first."""
        grid = self.grid
        if "baseline_auc" not in grid.tensor_names:
            return []
        auc, lo, hi = (grid.tensor(f"baseline_auc{s}") for s in ("", "_lo", "_hi"))
        n = grid.tensor("baseline_n_test")[0]
        names = (grid.meta.get("baselines") or {}).get("names", [])
        from probeheat.probe.report import shown_baselines

        rows = [(shown, float(auc[k]), float(lo[k]), float(hi[k]), int(n[k]))
                for k, shown in shown_baselines(names, auc)]
        return sorted(rows, key=lambda r: -r[1])

    @cached_property
    def null(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(median, 95th percentile) of the permutation null per position (NaN: none)."""
        if "perm_auc" not in self.grid.tensor_names:
            return None
        rows = [v[np.isfinite(v)] for v in self.grid.tensor("perm_auc")]
        median = np.array([np.median(v) if v.size else np.nan for v in rows])
        p95 = np.array([np.percentile(v, 95) if v.size else np.nan for v in rows])
        return median, p95

    def stored(self, name: str) -> np.ndarray | None:
        """A per-cell tensor the grid may hold (p_vs_baseline, q_vs_baseline, ...)."""
        return self.grid.tensor(name) if name in self.grid.tensor_names else None

    def comparison(self, other: GridModel):
        """Cell-by-cell tests of this grid minus another (probeheat.probe.compare), cached."""
        cache = self.__dict__.setdefault("_comparisons", {})
        key = str(other.grid.path.resolve())
        if key not in cache:
            from probeheat.probe.compare import compare

            cache[key] = compare(self.grid, other.grid)
        return cache[key]


def diff_values(a: GridModel, b: GridModel, metric: str) -> np.ndarray:
    """A - B over A's cells; cells B lacks (other layers or positions) are NaN."""
    if metric not in b.metrics:
        raise UserError(str(b.grid.path), f"has no metric {metric!r}",
                        f"pick a grid with {metric}, or switch metric with m")
    out = a.grid_values.diff(b.grid_values, metric)
    if out is None:
        raise UserError(str(b.grid.path), "shares no layer and position with this grid",
                        "compare grids of the same model and positions")
    return out


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
        entry.accuracy = _accuracy(float(np.sum(labels == 0)), len(labels))
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
        if "manifest.json" in files:
            dirs[:] = []  # a bundle's own sub-folders (shards/) are not bundles
            name = here.relative_to(root).as_posix() if here != root else here.name
            found.append(describe(here, name))
    return found


# -- one cell in detail ---------------------------------------------------------------------

@dataclass
class Example:
    score: float
    label: int  # 1 = the model's answer was incorrect
    question: str
    answer: str


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


def cell_detail(model: GridModel, row: int, col: int, k: int = 5) -> CellDetail:
    layer, position = model.layers[row], model.positions[col]
    values = {m: float(model.values(m)[row, col]) for m in model.metrics}
    intervals = {m: iv for m in model.metrics if (iv := model.interval(m, row, col))}
    counts = {name: int(arr[row, col]) for name, arr in model.counts.items()}
    detail = CellDetail(layer, position, values, intervals, counts,
                        model.reasons.get((layer, position)))
    detail.spread = model.spread(model.metrics[0], row, col)
    try:
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
    labels = grid.tensor("labels").astype(np.int64)
    rows, here = cell_scores(grid, row, col)
    others = []
    if 0 in model.layers and model.layers[row] != 0:
        others.append((f"layer 0 {model.positions[col]}", model.layers.index(0), col))
    best = model.best("auc")
    if best is not None and best != (row, col):
        others.append((f"best cell L{model.layers[best[0]]} {model.positions[best[1]]}", *best))
    for name, r, c in others:
        _, theirs = cell_scores(grid, r, c)
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
    order = np.argsort(-scores, kind="stable")

    def pick(indices) -> list[Example]:
        out = []
        for i in indices:
            rec = records[int(rows[i])] if int(rows[i]) < len(records) else {}
            out.append(Example(float(scores[i]), int(labels[i]), str(rec.get("question", "?")),
                               str(rec.get("answer", "?")).strip()))
        return out

    detail.highest = pick(order[:k])
    detail.lowest = pick(order[::-1][:k])
