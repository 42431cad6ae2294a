"""Sampled answers and error types as the viewer shows them (no textual here).

Runs made with ``probeheat run --samples K`` give each record its K ``samples`` and an
``error_type`` (artifacts/FORMAT.md, *Records*); the types are the study's
(probeheat/data/error_types.py). The viewer counts and filters by the paper's five types
(A-E, PAPER_TYPES; a merged type holds its pair of fine types, ``has_type``), and scores
the samples with a grid's probe refitted at a cell (``probeheat.probe.select.refit_probe``,
imported only when asked: it needs torch).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.table import Table
from rich.text import Text

from probeheat.data.error_types import MERGED, PAPER_TYPES, TYPES, has_type
from probeheat.errors import UserError

# The paper's letters (README, *Error types*): one per paper type, two per merged pair.
LETTERS = {"refuses": "A", "consistently-correct": "B", "consistently-wrong": "C",
           "competing": "D", "many-answers": "E"}
FINE_LETTERS = {"refuses": "A", "correct-always": "B1", "correct-mostly": "B2",
                "wrong-always": "C1", "wrong-mostly": "C2", "competing": "D",
                "many-never-correct": "E1", "many-with-correct": "E2"}
ALL_TYPES = "all types"
NO_TYPE = "no type"


# -- one record --------------------------------------------------------------------------------

def fine_types(record: dict) -> list[str] | None:
    """The record's types (fine names), or None for a record without sampled answers."""
    info = record.get("error_type")
    if not isinstance(info, dict):
        return None
    return [str(t) for t in info.get("types") or []]


def paper_types(record: dict) -> list[str]:
    """The paper types (PAPER_TYPES order) of a record; [] without samples or types."""
    types = fine_types(record) or []
    return [name for name in PAPER_TYPES if has_type(types, name)]


def type_letters(record: dict) -> str:
    """The paper letters of a record's types ("C D"), "—" for none."""
    return " ".join(LETTERS[t] for t in paper_types(record)) or "—"


def type_names(record: dict) -> str:
    """The record's types in words, each paper type with its letter and fine type."""
    fine = fine_types(record)
    if fine is None:
        return "no sampled answers"
    parts = []
    for name in paper_types(record):
        pair = [f"{FINE_LETTERS[t]} {t}" for t in MERGED.get(name, ()) if t in fine]
        parts.append(f"{LETTERS[name]} {name}" + (f" ({', '.join(pair)})" if pair else ""))
    return "; ".join(parts) or "none of the types"


def keep_type(record: dict, name: str) -> bool:
    """Whether a record passes the type filter ``name`` (ALL_TYPES, NO_TYPE or a type)."""
    if name == ALL_TYPES:
        return True
    types = paper_types(record)
    return not types if name == NO_TYPE else name in types


def has_samples(records: list[dict]) -> bool:
    return any(fine_types(r) is not None for r in records)


def correct_of(record: dict) -> str:
    """``C/K``: the correct samples of K ("" without samples)."""
    info = record.get("error_type")
    if not isinstance(info, dict):
        return ""
    return f"{info.get('correct', '?')}/{info.get('n', len(record.get('samples') or []))}"


# -- many records ------------------------------------------------------------------------------

@dataclass
class TypeRow:
    """One error type over a run: its questions and how many the greedy answer got right."""

    name: str
    n: int
    greedy_correct: int
    fine: dict[str, int] = field(default_factory=dict)  # a merged type's fine types

    @property
    def letter(self) -> str:
        return LETTERS.get(self.name, "")


def type_distribution(records: list[dict]) -> list[TypeRow]:
    """Each paper type's questions (a question may have several types), then those with
    none; records without samples are left out."""
    sampled = [r for r in records if fine_types(r) is not None]
    rows = []
    for name in PAPER_TYPES:
        hits = [r for r in sampled if has_type(fine_types(r), name)]
        fine = Counter(t for r in hits for t in fine_types(r) if t in MERGED.get(name, ()))
        rows.append(TypeRow(name, len(hits), sum(bool(r["correct"]) for r in hits),
                            {t: fine[t] for t in TYPES if fine[t]}))
    none = [r for r in sampled if not paper_types(r)]
    rows.append(TypeRow(NO_TYPE, len(none), sum(bool(r["correct"]) for r in none)))
    return rows


def type_filters(records: list[dict]) -> tuple[str, ...]:
    """What the type filter cycles through: every type some record has, then no type."""
    rows = type_distribution(records)
    return (ALL_TYPES,) + tuple(r.name for r in rows if r.n)


def next_filter(current: str, filters: tuple[str, ...]) -> str:
    return filters[(filters.index(current) + 1) % len(filters)] if current in filters \
        else filters[0]


def filter_label(name: str) -> str:
    return f"{LETTERS[name]} {name}" if name in LETTERS else name


# -- what the screens draw ---------------------------------------------------------------------

def types_table(records: list[dict], fine: bool = True) -> Table:
    """The run page's error-type distribution: type, questions, greedy accuracy, and (with
    ``fine``: terminals of 100 columns and more) the counts of the fine types."""
    rows = type_distribution(records)
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1), expand=False)
    # the counts never shrink: the type's name is cut first, and the fine types wrap
    table.add_column("error type", no_wrap=True, overflow="ellipsis", header_style="bold",
                     max_width=18)
    for name in ("n", "greedy ✓"):
        table.add_column(name, justify="right", no_wrap=True, header_style="bold",
                         min_width=len(name))
    if fine:
        table.add_column("fine", header_style="bold", max_width=22)
    for row in rows:
        shown = filter_label(row.name)
        accuracy = f"{row.greedy_correct / row.n:.0%}" if row.n else ""
        cells = [shown, str(row.n), accuracy]
        if fine:
            cells.append(" ".join(f"{FINE_LETTERS[t]} {n}" for t, n in row.fine.items()))
        table.add_row(*cells, style="italic" if row.name == NO_TYPE else None)
    return table


def error_type_rows(record: dict) -> list[tuple[str, str]]:
    """(label, value) rows of a record's error type: types, counts, wrong clusters."""
    info = record.get("error_type")
    if not isinstance(info, dict):
        return []
    counts = (f"C {info.get('correct', '?')} of K {info.get('n', '?')} samples correct · "
              f"W {info.get('largest_wrong', '?')} (largest wrong cluster) · "
              f"D {info.get('distinct_wrong', '?')} (distinct wrong answers)")
    if info.get("no_answer"):
        counts += f" · NO ANSWER {info['no_answer']}"
    wrong = info.get("wrong_answers") or {}
    clusters = " · ".join(f"{key!r} ×{n}" for key, n in
                          sorted(wrong.items(), key=lambda kv: (-kv[1], kv[0])))
    return [("error types", type_names(record)), ("samples", counts),
            ("wrong answers", clusters or "none")]


def samples_table(record: dict, scores: np.ndarray | None = None) -> Table:
    """One row per sampled answer: grade, exact answer, (score at a cell), answer."""
    table = Table(show_edge=False, pad_edge=False, expand=True)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("grade", no_wrap=True)
    table.add_column("exact answer", min_width=12)
    if scores is not None:
        table.add_column("log-odds", justify="right", no_wrap=True)
    table.add_column("answer", min_width=20)
    for k, sample in enumerate(record.get("samples") or []):
        grade = Text("✓ correct") if sample.get("correct") else Text("✗ wrong", style="bold")
        if sample.get("refused"):
            exact = Text("NO ANSWER (refusal)", style="italic")
        elif sample.get("exact_answer") is None:
            exact = Text("none", style="italic")
        else:
            exact = Text(str(sample["exact_answer"]))
        cells = [str(k), grade, exact]
        if scores is not None:
            value = float(scores[k]) if k < len(scores) else float("nan")
            cells.append("—" if np.isnan(value) else f"{value:.3f}")
        cells.append(Text(" ".join(str(sample.get("answer", "")).split())))
        table.add_row(*cells)
    return table


# -- scoring the samples at a cell -------------------------------------------------------------

def cannot_score(run, grid, layer: int, position: str) -> str | None:
    """Why the samples of this run cannot be scored at the cell (None: they can)."""
    spec = run.samples if run is not None else None
    if run is None:
        return "the grid's run bundle was not found"
    if not spec:
        return "the run has no sampled answers"
    site = str((grid.meta.get("probe") or {}).get("site", "resid"))
    if site != "resid":
        return f"the grid probes site {site}; samples keep resid states only"
    if layer not in spec["layers"] or position not in spec["positions"]:
        return (f"the samples' states were kept at layers {_span(spec['layers'])} and "
                f"positions {', '.join(spec['positions'])}, not at L{layer} {position}")
    return None


def _span(layers: list[int]) -> str:
    return f"{layers[0]}..{layers[-1]}" if len(layers) > 2 else ", ".join(map(str, layers))


def score_samples(run, grid, layer: int, position: str) -> tuple[np.ndarray, float]:
    """Every sample's log-odds at the cell [n, K] (NaN: the sample lacks the position), from
    the grid's probe refitted there, and the refit's largest stored-score difference.

    Imports the probe code (torch) here, on first use: never at the viewer's start-up.
    """
    from probeheat.probe.select import refit_probe

    model, diff = refit_probe(run, grid, layer, position)
    X, mask = run.read_samples(layer)
    col = run.samples["positions"].index(position)
    X, mask = X[:, :, col], mask[:, :, col]
    n, k, d = X.shape
    scores = np.asarray(model.decision_function(X.reshape(n * k, d))).reshape(n, k)
    return np.where(mask, scores, np.nan), diff


# -- steering results of a grid ----------------------------------------------------------------

@dataclass
class SteerRef:
    path: Path
    layer: int
    position: str
    verdict: str


def find_steers(grid_id: str, roots: list[Path], *, depth: int = 3,
                max_folders: int = 5000) -> list[SteerRef]:
    """Steer bundles whose steer.json names this grid (``grid.id``), under the roots to
    ``depth`` folders; bundles that cannot be read are skipped."""
    from probeheat.bundle import open_bundle

    found: dict[Path, SteerRef] = {}
    visited = 0
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            visited += 1
            if visited > max_folders:
                break
            level = len(here.relative_to(root).parts)
            dirs[:] = [] if level >= depth else sorted(
                d for d in dirs if not d.startswith(".") and not d.endswith(".partial"))
            if "manifest.json" in files:
                dirs[:] = []
                ref = _steer_of(here, grid_id, open_bundle)
                if ref is not None:
                    found.setdefault(here.resolve(), ref)
    return sorted(found.values(), key=lambda s: str(s.path))


def _steer_of(folder: Path, grid_id: str, open_bundle) -> SteerRef | None:
    try:
        bundle = open_bundle(folder)
        if bundle.kind != "steer" or bundle.meta["grid"].get("id") != grid_id:
            return None
        cell = bundle.meta["cell"]
        return SteerRef(folder, int(cell["layer"]), str(cell["position"]), bundle.verdict)
    except (UserError, KeyError, TypeError, ValueError, AttributeError, OSError):
        return None
