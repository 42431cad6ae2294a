"""Datasets: questions with gold answer aliases, from the built-in set or the user's files.

`load_dataset(spec)` accepts
- ``world-facts``: the built-in country questions (see `probeheat.data.world_facts`);
- a path ending .jsonl/.json/.csv/.parquet with a question column and an answers column
  (a list of strings, or one string with aliases separated by ``|``);
- ``hf:NAME[:CONFIG]``: a Hugging Face dataset (needs the `datasets` package and the hub);
- a preset name (``triviaqa``, ``natural-questions``, ``hotpotqa``, ``movies``, ``winobias``,
  ``imdb``): one of the study's datasets with its columns, prompt and grader (see
  `probeheat.data.presets`; needs `datasets` and the hub).

Examples are shuffled with ``random.Random(seed)`` and then cut to `limit`, so a run's
examples are a pure function of (data, seed, limit). Bad rows are skipped and reported in
`Dataset.skipped`; a file without any good row is an error.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from probeheat.errors import UserError, did_you_mean

BUILTIN = ("world-facts",)
_SCALARS = (str, int, float, bool, type(None))


@dataclass
class Example:
    id: str
    question: str
    answers: list[str]
    meta: dict = field(default_factory=dict)


@dataclass
class Dataset:
    name: str
    examples: list[Example]
    content_hash: str  # sha256 of the source file bytes, or of the canonical built set
    source: str
    license: str
    grader: str
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (row number, reason)
    category_column: str | None = None  # the column baselines group error rates by
    template: str | None = None  # a prompt the dataset fixes (used under --template auto)

    def columns(self) -> list[str]:
        """The extra columns the examples carry (besides question, answers and id)."""
        out: list[str] = []
        for example in self.examples:
            out += [k for k in example.meta if k not in out]
        return out


def _canonical_hash(rows: list[dict]) -> str:
    text = json.dumps(rows, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_answers(value, _depth: int = 0) -> list[str]:
    """Gold aliases from a cell: a list, a '|'-separated string, a number, or a dict with
    'aliases'/'value'/'text' (TriviaQA and SQuAD layouts)."""
    if isinstance(value, dict):
        if _depth >= 4:  # deeper nesting is not an answer layout of any dataset
            return []
        parts = []
        for key in ("value", "aliases", "text"):
            parts += parse_answers(value.get(key), _depth + 1)
        value = parts
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, int | float):
        value = str(value)
    if isinstance(value, str):
        value = value.split("|")
    if not isinstance(value, list | tuple):
        return []
    out: list[str] = []
    for item in value:
        alias = str(item).strip() if isinstance(item, str | int | float) else ""
        if alias and not isinstance(item, bool) and alias not in out:
            out.append(alias)
    return out


def _check_columns(where: str, rows, question_column, answers_column, id_column) -> None:
    columns: list[str] = []
    for _, row in rows:
        columns += [k for k in row if k not in columns]
    shown = ", ".join(map(repr, columns[:12])) or "none"
    for col, flag in ((question_column, "--question-column"), (answers_column, "--answers-column"),
                      (id_column, "--id-column")):  # fmt: skip
        if col is not None and col not in columns:
            raise UserError(where, f"no {col!r} column (columns: {shown})", f"pass {flag} NAME")


MISSING_ID = ("skip", "row")  # a row without an id: skip it (counted), or use its row number


def _row_id(row: dict, n: int, prefix: str, id_column: str | None, missing_id: str):
    """(id, None) or (None, why the row has none)."""
    if id_column is None:
        return f"{prefix}{n}", None
    raw = row.get(id_column)
    qid = "" if raw is None or isinstance(raw, dict | list) else str(raw).strip()
    if qid:
        return qid, None
    if missing_id == "row":
        return f"{prefix}{n}", None
    return None, f"no {id_column!r} (pass --missing-id row to use the row number)"


def rows_to_examples(rows, *, where: str, prefix: str, question_column: str,
                     answers_column: str, id_column: str | None,
                     missing_id: str = "skip"):  # fmt: skip
    """(examples, skipped) from (row number, row) pairs.

    Without ``id_column``, a column named ``id`` is the id when the rows have one.
    """
    if id_column is None and any("id" in row for _, row in rows):
        id_column = "id"
    _check_columns(where, rows, question_column, answers_column, id_column)
    examples: list[Example] = []
    skipped: list[tuple[int, str]] = []
    seen: set[str] = set()
    for n, row in rows:
        question = row.get(question_column)
        question = question.strip() if isinstance(question, str) else ""
        answers = parse_answers(row.get(answers_column))
        qid, no_id = _row_id(row, n, prefix, id_column, missing_id)
        reason = (
            f"empty {question_column!r}" if not question
            else f"no answers in {answers_column!r}" if not answers
            else no_id if no_id
            else f"duplicate id {qid!r}" if qid in seen
            else None
        )  # fmt: skip
        if reason:
            skipped.append((n, reason))
            continue
        seen.add(qid)
        used = {question_column, answers_column, id_column}
        meta = {k: v for k, v in row.items() if k not in used and isinstance(v, _SCALARS)}
        examples.append(Example(qid, question, answers, meta))
    return examples, skipped


def _world_facts() -> Dataset:
    from probeheat.data import world_facts

    rows, _dropped = world_facts.build()
    examples = [Example(r["id"], r["question"], r["answers"], r["meta"]) for r in rows]
    return Dataset(world_facts.NAME, examples, _canonical_hash(rows), world_facts.source(),
                   world_facts.LICENSE, "alias_match", category_column="relation")  # fmt: skip


def _from_rows(rows, skipped, *, where, name, content_hash, source, license, columns):
    examples, bad = rows_to_examples(rows, where=where, prefix=f"{name}/", **columns)
    skipped = sorted(skipped + bad)
    if not examples:
        first = f"; first problem: row {skipped[0][0]}: {skipped[0][1]}" if skipped else ""
        raise UserError(where, f"no usable rows{first}", "each row needs a question and answers")
    if content_hash is None:
        content_hash = _canonical_hash([e.__dict__ for e in examples])
    return Dataset(name, examples, content_hash, source, license, "alias_match", skipped)


def _check_preset_columns(spec: str, question_column, answers_column, id_column) -> None:
    """A preset knows its own columns: renaming them is refused, not ignored."""
    for flag, value, default in (("--question-column", question_column, "question"),
                                 ("--answers-column", answers_column, "answers"),
                                 ("--id-column", id_column, None)):
        if value != default:
            raise UserError(flag, f"does not apply to the preset {spec!r} (it knows its columns)",
                            f"drop {flag}, or pass the data as a file")


def unknown_dataset(spec: str) -> UserError:
    """A name that is neither a file nor a built-in dataset or preset: say what is known,
    the nearest name first."""
    from probeheat.data import presets

    names = sorted(BUILTIN) + sorted(presets.PRESETS)
    return UserError("--dataset", f"unknown dataset {spec!r}: no such file, built-in dataset "
                     "or preset", f"{did_you_mean(spec, names)}known: {', '.join(names)}; or a .jsonl, .json, .csv "
                     "or .parquet file, or hf:NAME")


def load_dataset(
    spec: str,
    *,
    question_column: str = "question",
    answers_column: str = "answers",
    id_column: str | None = None,
    limit: int | None = None,
    seed: int | None = 0,
    split: str | None = None,
    missing_id: str = "skip",
) -> Dataset:
    """Load, shuffle with `seed` (None keeps the source order), then keep `limit` examples.

    `split` is the hub split of ``hf:`` specs (default validation) and presets (default
    the preset's own, the study's training side)."""
    from probeheat.data import files, presets

    if limit is not None and limit < 1:
        raise UserError("--limit", f"must be at least 1, got {limit}", "pass a positive number")
    if missing_id not in MISSING_ID:
        raise UserError("--missing-id", f"unknown choice {missing_id!r}", "use skip or row")
    columns = dict(question_column=question_column, answers_column=answers_column,
                   id_column=id_column, missing_id=missing_id)  # fmt: skip
    if spec in presets.PRESETS:
        _check_preset_columns(spec, question_column, answers_column, id_column)
        return presets.load_preset(spec, limit=limit, seed=seed, split=split)
    if spec in BUILTIN:
        ds = _world_facts()
    elif spec.startswith("hf:"):
        split = split or "validation"
        rows, name = files.read_hf(spec, split)
        # the hub's files are not at hand: hash what was read (ids, questions, answers)
        ds = _from_rows(rows, [], where=spec, name=name, content_hash=None,
                        source=f"{spec} split={split}", license="see the dataset card",
                        columns=columns)  # fmt: skip
    else:
        path = Path(spec).expanduser()
        if not path.suffix and not path.exists():
            raise unknown_dataset(spec)
        rows, skipped, data = files.read_file(path)
        ds = _from_rows(rows, skipped, where=str(path), name=path.stem,
                        content_hash=hashlib.sha256(data).hexdigest(),
                        source=str(path.resolve()), license="unknown (user file)",
                        columns=columns)  # fmt: skip
    if seed is not None:
        random.Random(seed).shuffle(ds.examples)
    if limit is not None:
        ds.examples = ds.examples[:limit]
    return ds
