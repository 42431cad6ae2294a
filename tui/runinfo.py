"""What the run page and the browser show of a run, finished or still being written
(no textual here, so tests check the numbers without a terminal).

A run in progress lives in ``NAME.partial/`` (artifacts/FORMAT.md): ``run.json`` holds the
run's metadata from the start (``dataset.n_rows`` is the number of examples it will have),
and each shard appears by rename, tensors first and records last, so the records written
so far are the ``shards/shard-r*.json`` files present. Everything here reads such a folder
while its writer may be adding to it (or renaming it into place): whatever cannot be read
yet is reported, never raised.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from probeheat.bundle import open_bundle
from probeheat.bundle.base import read_json
from probeheat.bundle.lock import LOCK_NAME
from probeheat.bundle.records import check_records
from probeheat.bundle.run import RUN_META, SHARD_DIR, SHARD_RE
from probeheat.errors import UserError
from probeheat.probe.metrics import wilson  # noqa: F401 (also imported from here)

PARTIAL = ".partial"
FILTERS = ("all", "correct", "wrong", "no exact answer")
NO_CATEGORY = "(none)"


# -- one record -----------------------------------------------------------------------------

def has_exact_answer(record: dict) -> bool:
    """False when the record says it has no exact answer (span or text null)."""
    if "exact_span" in record:
        return record["exact_span"] is not None
    return record.get("exact_answer", "") is not None


def missing_reason(record: dict) -> str:
    """Why a record has no exact answer, as its exact-answer positions say."""
    missing = record.get("missing") or {}
    for name in sorted(missing):
        if name.startswith("exact_answer"):
            return str(missing[name])
    return "no exact answer (no reason recorded)"


def reason_kind(reason: str) -> str:
    """A reason without its example's details, so that reasons can be counted:
    quoted text becomes …, a trailing "(heuristic, 7 words)" goes."""
    text = re.sub(r"^no exact answer:\s*", "", reason.strip())
    text = re.sub(r"(?<!\w)('[^']*'|\"[^\"]*\")(?!\w)", "…", text)
    return re.sub(r"\s*\([^()]*\)\s*$", "", text) or reason


def gold_text(record: dict) -> str:
    """The gold answer: the alias that matched, else the aliases."""
    if record.get("matched_alias"):
        return str(record["matched_alias"])
    answers = record.get("answers") or []
    return " | ".join(str(a) for a in answers)


def search_text(record: dict) -> str:
    parts = [record.get(k) for k in ("question", "answer", "exact_answer", "id", "category")]
    parts.append(gold_text(record))
    parts += list(record.get("answers") or [])
    return "\n".join(str(p) for p in parts if p is not None).lower()


def keep(record: dict, kind: str, text: str = "") -> bool:
    """Whether a record passes the correctness filter ``kind`` (FILTERS) and the text."""
    if kind == "correct" and not record["correct"]:
        return False
    if kind == "wrong" and record["correct"]:
        return False
    if kind == "no exact answer" and has_exact_answer(record):
        return False
    return not text or text.lower() in search_text(record)


def record_fields(record: dict) -> tuple[str, list[tuple[str, str]]]:
    """Everything the run page says about one example (Enter on it): a title and
    (label, value) rows."""
    title = f"#{record['index']} · {record['id']}" + (
        f" · category {record['category']}" if record.get("category") else "")
    verdict = "correct" if record["correct"] else "wrong"
    rows = [("question", str(record.get("question", "?"))),
            ("model answer", str(record.get("answer", "?")).strip()),
            ("gold", " | ".join(record.get("answers") or []) or "?"),
            ("verdict", verdict + (f" (grader {record['grader']})" if record.get("grader")
                                   else ""))]
    if has_exact_answer(record):
        source = record.get("exact_answer_source")
        rows.append(("exact answer", repr(record.get("exact_answer"))
                     + (f" ({source})" if source else "")))
    else:
        rows.append(("exact answer", f"none: {missing_reason(record)}"))
    if "stop_reason" in record:
        rows.append(("generation", f"{record.get('gen_len', '?')} tokens, stopped by "
                                   f"{record['stop_reason']}"))
    p_true = record.get("p_true") or {}
    if p_true.get("answer") is not None:
        rows.append(("p(True)", f"{p_true['answer']:.3f}"))
    return title, rows


# -- a run -----------------------------------------------------------------------------------

@dataclass
class Progress:
    """How far a run in progress is."""

    done: int
    total: int | None
    writer: str  # "running", "stopped", or what is known about it
    updated: float | None = None  # mtime of the newest shard
    problems: list[str] = field(default_factory=list)  # shards that could not be read

    @property
    def text(self) -> str:
        if self.total:
            return f"{self.done}/{self.total} ({self.done / self.total:.0%})"
        return f"{self.done}/?"


@dataclass
class RunInfo:
    """A run's metadata and records, from a bundle or from a run still being written."""

    path: Path
    meta: dict
    records: list[dict]
    progress: Progress | None = None  # None: a finished bundle
    bundle: object | None = field(default=None, repr=False)

    @classmethod
    def from_bundle(cls, run) -> RunInfo:
        return cls(run.path, run.meta, list(run.records()), bundle=run)

    @property
    def partial(self) -> bool:
        return self.progress is not None

    @property
    def id(self) -> str:
        return str(self.meta.get("id", ""))

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def n_correct(self) -> int:
        return sum(1 for r in self.records if r["correct"])

    def accuracy(self) -> tuple[float, float, float]:
        """Accuracy and its 95% Wilson interval (NaN without records)."""
        n, k = self.n, self.n_correct
        lo, hi = wilson(k, n)
        return (k / n if n else math.nan), lo, hi

    def categories(self) -> list[tuple[str, int, int]]:
        """(category, examples, correct) by category, largest first; [] without any."""
        if not any(r.get("category") is not None for r in self.records):
            return []
        n, k = Counter(), Counter()
        for r in self.records:
            name = NO_CATEGORY if r.get("category") is None else str(r["category"])
            n[name] += 1
            k[name] += bool(r["correct"])
        return [(name, count, k[name]) for name, count in
                sorted(n.items(), key=lambda item: (-item[1], item[0]))]

    def missing_reasons(self) -> list[tuple[str, int]]:
        """(reason, examples) of the examples without an exact answer, most first."""
        counts = Counter(reason_kind(missing_reason(r)) for r in self.records
                         if not has_exact_answer(r))
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def examples(self, kind: str = "all", text: str = "", error_type: str = "all types"
                 ) -> list[dict]:
        """The records passing the correctness filter, the text and the error-type filter
        (``samples.ALL_TYPES``, ``samples.NO_TYPE`` or a paper type)."""
        from .samples import keep_type

        return [r for r in self.records if keep(r, kind, text) and keep_type(r, error_type)]

    @property
    def sampled(self) -> bool:
        """Whether the records carry sampled answers and error types (run --samples K)."""
        from .samples import has_samples

        return has_samples(self.records)


def label(value: object, *keys: str) -> str:
    if isinstance(value, dict):
        for key in keys:
            if value.get(key):
                return str(value[key])
        return "?"
    return "?" if value is None else str(value)


# -- runs still being written -----------------------------------------------------------------

_SHARDS: dict[tuple[str, int, int], list[dict]] = {}  # (file, size, mtime) -> its records
_SHARDS_KEPT = 512


def _shard_records(path: Path) -> list[dict]:
    """A shard's records, read once: a shard file never changes after its rename."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHARDS:
        data = read_json(path)
        records = check_records(data.get("records") if isinstance(data, dict) else None,
                                str(path))
        if len(_SHARDS) >= _SHARDS_KEPT:
            _SHARDS.pop(next(iter(_SHARDS)))
        _SHARDS[key] = list(records)
    return _SHARDS[key]


def writer_state(folder: Path) -> str:
    """Whether a writer holds the partial: its lock file names a live process here.

    The lock file goes when a writer stops cleanly and stays when it was killed; the
    flock itself is never touched (a reader taking it would refuse a writer).
    """
    try:
        data = json.loads((folder / LOCK_NAME).read_text() or "{}")
    except FileNotFoundError:
        return "stopped"
    except (OSError, ValueError):
        return "writer unknown"
    if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
        return "writer unknown"
    if data.get("host") != socket.gethostname():
        return f"writer on {data.get('host')}"
    try:
        os.kill(data["pid"], 0)
    except ProcessLookupError:
        return "stopped"
    except PermissionError:
        return "running"
    except OSError:
        return "writer unknown"
    return "running"


def read_partial(folder: Path) -> RunInfo:
    """What a run in progress holds so far; UserError when not even its run.json reads."""
    folder = Path(folder)
    if not (folder / RUN_META).is_file():
        raise UserError(str(folder), f"nothing readable yet (no {RUN_META})",
                        "wait for the run to start writing, then F5")
    try:
        meta = read_json(folder / RUN_META)
    except UserError as exc:
        raise UserError(str(folder), f"nothing readable yet ({RUN_META}: {exc.problem})",
                        "wait a moment, then F5") from None
    if not isinstance(meta, dict):
        raise UserError(str(folder / RUN_META), "is not a JSON object", "wait, then F5")
    records, problems, newest = _partial_records(folder)
    total = (meta.get("dataset") or {}).get("n_rows") if isinstance(meta.get("dataset"),
                                                                    dict) else None
    progress = Progress(len(records), total if isinstance(total, int) else None,
                        writer_state(folder), newest, problems)
    return RunInfo(folder, meta, records, progress)


def _partial_records(folder: Path) -> tuple[list[dict], list[str], float | None]:
    records, problems, newest, seen = [], [], None, set()
    try:
        names = sorted(p for p in (folder / SHARD_DIR).iterdir() if SHARD_RE.match(p.name))
    except OSError:
        return [], [], None  # no shards folder yet, or the run was just renamed into place
    for path in names:
        try:
            shard = _shard_records(path)
            newest = max(newest or 0.0, path.stat().st_mtime)
        except FileNotFoundError:
            continue  # renamed away (the run finished) between listing and reading
        except (UserError, OSError, ValueError) as exc:
            if not path.exists():
                continue
            problems.append(exc.line() if isinstance(exc, UserError) else f"{path}: {exc}")
            continue
        for record in shard:
            if record["index"] not in seen:
                seen.add(record["index"])
                records.append(record)
    records.sort(key=lambda r: r["index"])
    return records, problems, newest


def finished_path(partial: Path) -> Path:
    """Where a partial run's bundle lands when it is finished."""
    return partial.with_name(partial.name[: -len(PARTIAL)])


def find_partials(root: Path) -> list[Path]:
    """Every ``*.partial`` folder under root (not inside bundles or hidden folders)."""
    found = []
    for folder, dirs, files in os.walk(root):
        if "manifest.json" in files:
            dirs[:] = []
            continue
        found += [Path(folder) / d for d in dirs if d.endswith(PARTIAL)]
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not d.endswith(PARTIAL))
    return sorted(found)


# -- grids made from a run --------------------------------------------------------------------

@dataclass
class GridRef:
    path: Path
    name: str
    best: str  # value of the best cell (auc where the grid has it), its layer and position
    shape: str
    role: str  # "run" (its rows are this run's examples) or "trained on" (a transfer grid)
    bundle: object = field(repr=False)
    label: str = ""  # short name for the list


def grid_roots(run_path: Path, root: Path | None) -> list[Path]:
    """Where grids of a run are looked for: beside it, the folder above a ``runs/`` folder
    (artifacts/runs/X finds artifacts/grids/Y), and the viewer's folder of bundles."""
    parent = run_path.resolve().parent
    out = []
    for folder in (parent, parent.parent if parent.name == "runs" else None, root):
        if folder is not None and folder.is_dir() and folder.resolve() not in \
                [f.resolve() for f in out]:
            out.append(folder)
    return out


def find_grids(run_id: str, roots: list[Path], *, depth: int = 3,
               max_folders: int = 5000) -> list[GridRef]:
    """Grids whose metadata names this run (``run.id``, or ``train_run.id`` of a transfer
    grid), under the roots to ``depth`` folders; grids that cannot be read are skipped."""
    found: dict[Path, GridRef] = {}
    visited = 0
    for root in roots:
        for folder, dirs, files in os.walk(root):
            here = Path(folder)
            visited += 1
            level = len(here.relative_to(root).parts)
            dirs[:] = [] if level >= depth else sorted(
                d for d in dirs if not d.startswith(".") and not d.endswith(PARTIAL))
            if "manifest.json" in files:
                dirs[:] = []
                ref = _grid_of(here, run_id)
                if ref is not None:
                    found.setdefault(here.resolve(), ref)
            if visited > max_folders:
                break
    grids = sorted(found.values(), key=lambda g: g.name)
    names = [g.path.name for g in grids]
    for grid in grids:  # the folder's name, with its parent where two grids share one
        grid.label = grid.path.name if names.count(grid.path.name) == 1 \
            else f"{grid.path.parent.name}/{grid.path.name}"
    return grids


def _grid_of(folder: Path, run_id: str) -> GridRef | None:
    try:
        grid = open_bundle(folder)
        if grid.kind != "grid":
            return None
        meta = grid.meta
        role = _role(meta, run_id)
        if role is None:
            return None
        metric = "auc" if "auc" in grid.metrics else grid.metrics[0]
        best = grid.best_cell(metric)
        best_text = f"{best[2]:.3f} L{best[0]} {best[1]}" if best else "no cell"
        shape = f"{len(grid.layers)}x{len(grid.positions)}"
    except (UserError, KeyError, TypeError, ValueError, IndexError, OSError):
        return None
    return GridRef(folder, shown_path(folder), best_text, shape, role, grid)


def _role(meta: dict, run_id: str) -> str | None:
    for key, role in (("run", "run"), ("train_run", "trained on")):
        ref = meta.get(key)
        if isinstance(ref, dict) and ref.get("id") == run_id:
            return role
    return None


def shown_path(path: Path) -> str:
    """A path as the user would type it: relative to the working folder when inside it."""
    try:
        return Path(path).resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


# -- the browser's row of a run still being written -----------------------------------------

def describe_partial(path: Path, name: str):
    """A browser row for a ``*.partial`` folder: its progress, or why nothing reads yet."""
    from .model import BundleEntry

    entry = BundleEntry(path=path, name=name, kind="partial")
    try:
        info = read_partial(path)
    except UserError as exc:
        entry.examples, entry.best = "0/?", "starting"
        entry.note = exc.line()
        return entry
    entry.bundle = info
    meta, progress = info.meta, info.progress
    entry.model = label(meta.get("model"), "model_id", "name", "id")
    entry.dataset = label(meta.get("dataset"), "name", "id")
    entry.examples = progress.text
    entry.accuracy = f"{info.n_correct / info.n:.1%}" if info.n else ""
    entry.best = progress.writer
    entry.date = str(meta.get("created", ""))[:16].replace("T", " ")
    entry.note = (f"{name}: run still being written, {progress.text} rows, {progress.writer}"
                  + (f"; {len(progress.problems)} shard(s) unreadable" if progress.problems
                     else "") + "; Enter shows what is there so far")
    return entry
