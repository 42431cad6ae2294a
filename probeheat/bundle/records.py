"""The per-example record of a run bundle: one type, one validator, one label rule.

A record is a JSON object in a shard's ``.json`` file (artifacts/FORMAT.md lists every key).
``index``, ``id`` and ``correct`` are required; the other keys are written by
``probeheat run`` and may be absent in bundles written by other tools, but when present
they must have the documented type. Unknown keys are kept as they are.

Labels follow the study everywhere in probeheat: **1 = the model's answer was wrong**
(``error_labels``), because the probes detect errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NotRequired, TypedDict

import numpy as np

from ..errors import UserError
from .manifest import DAMAGED_FIX as DAMAGED


class Record(TypedDict):
    index: int  # position in the dataset after the seeded shuffle and limit; = grid row
    id: str
    correct: bool
    question: NotRequired[str]
    answers: NotRequired[list[str]]
    prompt: NotRequired[str]
    answer: NotRequired[str]
    grader: NotRequired[str]
    matched_alias: NotRequired[str | None]
    exact_answer: NotRequired[str | None]
    exact_answer_source: NotRequired[str]
    exact_span: NotRequired[list[int] | None]
    prompt_len: NotRequired[int]
    gen_len: NotRequired[int]
    stop_reason: NotRequired[str]
    positions: NotRequired[dict[str, int]]
    missing: NotRequired[dict[str, str]]
    clamped: NotRequired[list[str]]
    generated_ids: NotRequired[list[int]]
    token_logprobs: NotRequired[list[float]]
    p_true: NotRequired[dict[str, float | None]]
    category: NotRequired[str | None]
    group: NotRequired[str | None]
    samples: NotRequired[list[dict]]  # run --samples K: K sampled answers (FORMAT.md)
    error_type: NotRequired[dict]  # the error types the samples give, and their counts


_STR, _INT, _BOOL = (str,), (int,), (bool,)
_OPTIONAL_STR = (str, type(None))
# key -> allowed JSON types (bool is checked apart: it is an int in Python)
_TYPES: dict[str, tuple[type, ...]] = {
    "question": _STR, "prompt": _STR, "answer": _STR, "grader": _STR,
    "matched_alias": _OPTIONAL_STR, "exact_answer": _OPTIONAL_STR,
    "exact_answer_source": _STR, "stop_reason": _STR, "category": _OPTIONAL_STR,
    "group": _OPTIONAL_STR,
}


def make_record(index: int, id: str, correct: bool, **fields: Any) -> Record:
    """A record with the required keys and any documented extra keys."""
    record: dict[str, Any] = {"index": int(index), "id": str(id), "correct": bool(correct)}
    record.update(fields)
    return record  # type: ignore[return-value]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(record: Any) -> str | None:
    """What is wrong with one record, or None."""
    if not isinstance(record, dict):
        return f"a record is a JSON {type(record).__name__}, not an object"
    for key in ("index", "id", "correct"):
        if key not in record:
            return f"a record lacks {key!r}"
    if not _is_int(record["index"]) or record["index"] < 0:
        return f"record index {record['index']!r} is not a non-negative integer"
    if not isinstance(record["id"], str | int) or isinstance(record["id"], bool):
        return f"record {record['index']}: id {record['id']!r} is not a string"
    if not isinstance(record["correct"], bool):
        return f"record {record['index']}: 'correct' is {record['correct']!r}, not true/false"
    if "synthetic" in record and not isinstance(record["synthetic"], bool):
        return f"record {record['index']}: 'synthetic' is not true/false"
    for key, types in _TYPES.items():
        if key in record and not isinstance(record[key], types):
            return f"record {record['index']}: {key!r} has the wrong type"
    return _problem_in_positions(record)


def _problem_in_positions(record: dict) -> str | None:
    i = record["index"]
    for key in ("prompt_len", "gen_len"):
        if key in record and (not _is_int(record[key]) or record[key] < 0):
            return f"record {i}: {key!r} is not a non-negative integer"
    positions, missing = record.get("positions", {}), record.get("missing", {})
    if not isinstance(positions, dict) or not all(_is_int(v) and v >= 0
                                                  for v in positions.values()):
        return f"record {i}: 'positions' is not an object of non-negative integers"
    if not isinstance(missing, dict) or not all(isinstance(v, str) for v in missing.values()):
        return f"record {i}: 'missing' is not an object of reasons"
    if set(positions) & set(missing):
        return f"record {i}: a position is both present and missing"
    span = record.get("exact_span")
    if span is not None and not (isinstance(span, list) and len(span) == 2
                                 and all(_is_int(v) for v in span) and 0 <= span[0] <= span[1]):
        return f"record {i}: 'exact_span' is not [start, end]"
    if "answers" in record and not (isinstance(record["answers"], list)
                                    and all(isinstance(a, str) for a in record["answers"])):
        return f"record {i}: 'answers' is not a list of strings"
    return _problem_in_baselines(record)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _problem_in_baselines(record: dict) -> str | None:
    i, n = record["index"], record.get("gen_len")
    for key, ok in (("generated_ids", _is_int), ("token_logprobs", _is_number)):
        values = record.get(key, [])
        if not isinstance(values, list) or not all(ok(v) for v in values):
            return f"record {i}: {key!r} is not a list of numbers"
        if key in record and n is not None and len(values) != n:
            return f"record {i}: {key!r} has {len(values)} entries for {n} generated tokens"
    if any(v > 1e-9 for v in record.get("token_logprobs", [])):
        return f"record {i}: 'token_logprobs' holds a log-probability above 0"
    clamped = record.get("clamped", [])
    if not isinstance(clamped, list) or not set(clamped) <= set(record.get("positions", {})):
        return f"record {i}: 'clamped' names positions the record does not have"
    p_true = record.get("p_true", {})
    if not isinstance(p_true, dict) or not all(
            v is None or (_is_number(v) and 0.0 <= v <= 1.0) for v in p_true.values()):
        return f"record {i}: 'p_true' is not an object of probabilities"
    return _problem_in_samples(record)


_COUNTS = ("n", "correct", "largest_wrong", "distinct_wrong", "no_answer")


def _problem_in_samples(record: dict) -> str | None:
    """`samples` (each a record-like object of one sampled answer) and `error_type`."""
    i = record["index"]
    if "samples" not in record and "error_type" not in record:
        return None
    samples, typed = record.get("samples"), record.get("error_type")
    if not isinstance(samples, list) or not isinstance(typed, dict):
        return f"record {i}: 'samples' is not a list or 'error_type' not an object"
    for j, sample in enumerate(samples):
        if not isinstance(sample, dict) or not isinstance(sample.get("correct"), bool):
            return f"record {i}: sample {j} is not an object with 'correct' true/false"
        problem = _problem_in_positions({**sample, "index": i})
        if problem:
            return f"{problem} (sample {j})"
    if not all(_is_int(typed.get(k)) and typed[k] >= 0 for k in _COUNTS):
        return f"record {i}: 'error_type' lacks its counts ({', '.join(_COUNTS)})"
    if typed["n"] != len(samples) or typed["correct"] != sum(s["correct"] for s in samples):
        return f"record {i}: 'error_type' counts disagree with its samples"
    types = typed.get("types")
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        return f"record {i}: 'error_type' has no list of types"
    return None


def check_records(records: Any, where: str) -> list[Record]:
    """Validate a shard's records list; one-line UserError naming the file otherwise."""
    if not isinstance(records, list):
        raise UserError(where, "'records' is not a list", DAMAGED)
    for record in records:
        problem = _problem(record)
        if problem:
            raise UserError(where, problem, DAMAGED)
    return records


def check_complete(records: Sequence[Record], positions: Sequence[str], where: str) -> None:
    """A finished run: indices are exactly 0..n-1 and every record accounts for every
    position (present or missing) when it records positions at all."""
    indices = sorted(r["index"] for r in records)
    if indices != list(range(len(indices))):
        seen: set[int] = set()
        twice = next((i for i in indices if i in seen or seen.add(i)), None)
        problem = (f"example index {twice} appears twice" if twice is not None else
                   f"example indices are not 0..{len(indices) - 1}")
        raise UserError(where, problem, DAMAGED)
    wanted = set(positions)
    for r in records:
        if "positions" in r or "missing" in r:
            have = set(r.get("positions", {})) | set(r.get("missing", {}))
            if have != wanted:
                raise UserError(where, f"record {r['index']} does not list every position "
                                "as present or missing", DAMAGED)


def error_labels(records: Iterable[Record]) -> np.ndarray:
    """1 where the model's answer was wrong, 0 where it was right (the study's convention)."""
    return np.array([0 if r["correct"] else 1 for r in records], dtype=np.int64)
