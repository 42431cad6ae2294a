"""Reading user question files (.jsonl, .json, .csv, .parquet) and Hugging Face datasets.

Readers return ``(row number, row dict)`` pairs plus the rows they could not read as
``(row number, reason)``; turning rows into examples (columns, aliases) is shared.
Row numbers are 1-based: the line for .jsonl and .csv (the header is line 1), the element
for .json, the row for .parquet and Hugging Face datasets.
"""

from __future__ import annotations

import csv
import io
import json
import stat
from pathlib import Path

from probeheat.errors import UserError

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
Rows = list[tuple[int, dict]]
Skipped = list[tuple[int, str]]

_NOT_UTF8 = "not UTF-8"
_TOO_DEEP = "nested too deeply to be a question row"
MAX_FIELD = 64 << 20  # a CSV cell may hold a long passage; 64 MiB is not a question


def _has_surrogates(values) -> bool:
    # bytes that are not UTF-8 survive decoding as lone surrogates (surrogateescape)
    return any(isinstance(v, str) and any("\udc80" <= c <= "\udcff" for c in v) for v in values)


def read_jsonl(data: bytes) -> tuple[Rows, Skipped]:
    rows: Rows = []
    skipped: Skipped = []
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark is not part of row 1
    for n, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            skipped.append((n, _NOT_UTF8))
            continue
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            skipped.append((n, f"not valid JSON ({e.msg})"))
            continue
        except RecursionError:
            skipped.append((n, _TOO_DEEP))
            continue
        if isinstance(row, dict):
            rows.append((n, row))
        else:
            skipped.append((n, f"not a JSON object but {type(row).__name__}"))
    return rows, skipped


def read_json(data: bytes, where: str) -> tuple[Rows, Skipped]:
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise UserError(where, "file is not UTF-8", "save it as UTF-8") from None
    except json.JSONDecodeError as e:
        raise UserError(where, f"not valid JSON: {e}", "fix the file or use .jsonl") from None
    except RecursionError:
        raise UserError(where, "JSON nested too deeply", "write one flat object per row") from None
    if isinstance(doc, dict):  # {"data": [...]} and similar wrappers
        lists = [v for v in doc.values() if isinstance(v, list)]
        doc = lists[0] if len(lists) == 1 else doc
    if not isinstance(doc, list):
        raise UserError(
            where, "expected a JSON list of objects", "or use one object per line in .jsonl"
        )
    rows: Rows = []
    skipped: Skipped = []
    for n, row in enumerate(doc, start=1):
        if isinstance(row, dict):
            rows.append((n, row))
        else:
            skipped.append((n, f"not a JSON object but {type(row).__name__}"))
    return rows, skipped


def read_csv(data: bytes) -> tuple[Rows, Skipped]:
    text = data.decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, MAX_FIELD))  # csv's default (128 KiB) drops long passages
    try:
        return _csv_rows(csv.DictReader(io.StringIO(text, newline="")))
    except csv.Error as e:
        raise UserError(None, f"not a readable CSV file ({e})", "fix the file or use .jsonl") from None
    finally:
        csv.field_size_limit(limit)


def _csv_rows(reader: csv.DictReader) -> tuple[Rows, Skipped]:
    rows: Rows = []
    skipped: Skipped = []
    for row in reader:
        n = reader.line_num
        values = list(row.values()) + list(row.get(None) or [])
        if _has_surrogates(values):
            skipped.append((n, _NOT_UTF8))
        else:
            rows.append((n, {k: v for k, v in row.items() if k is not None}))
    if reader.fieldnames and _has_surrogates(reader.fieldnames):
        raise UserError(None, "the CSV header is not UTF-8", "save the file as UTF-8")
    return rows, skipped


def read_parquet(path: Path) -> tuple[Rows, Skipped]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UserError(
            str(path), "reading .parquet needs pyarrow", "pip install pyarrow"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a bad file
        raise UserError(str(path), f"not a readable Parquet file ({_first_line(e)})") from None
    return [(n, row) for n, row in enumerate(table.to_pylist(), start=1)], []


def read_file(path: Path) -> tuple[Rows, Skipped, bytes]:
    """Rows, skipped rows and the file's bytes (for the content hash)."""
    where = str(path)
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(
            where, f"unsupported file type {path.suffix or '(none)'!r}",
            "use .jsonl, .json, .csv or .parquet, or the built-in 'world-facts'",
        )  # fmt: skip
    check_regular_file(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(where, f"cannot read ({e.strerror or e})", "check the permissions") from None
    if not data.strip():
        raise UserError(where, "file is empty", "add one question per row")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows, skipped = read_jsonl(data)
    elif suffix == ".json":
        rows, skipped = read_json(data, where)
    elif suffix == ".csv":
        try:
            rows, skipped = read_csv(data)
        except UserError as e:
            raise UserError(where, e.problem, e.fix) from None
    else:
        rows, skipped = read_parquet(path)
    return rows, skipped, data


def check_regular_file(path: Path) -> None:
    """Refuse, before any work, a path that is missing, a folder, a FIFO or a device."""
    where = str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise UserError(where, "file not found", "check the path") from None
    except OSError as e:
        raise UserError(where, f"cannot read ({e.strerror or e})", "check the path") from None
    if stat.S_ISDIR(mode):
        raise UserError(where, "is a folder", "pass a .jsonl, .json, .csv or .parquet file")
    if not stat.S_ISREG(mode):
        raise UserError(where, "is not a regular file (a pipe or a device?)",
                        "save the data to a file first")


def read_hf(spec: str, split: str) -> tuple[Rows, str]:
    """Rows of a Hugging Face dataset given as ``hf:NAME[:CONFIG]``, and its name."""
    name, _, config = spec[len("hf:") :].partition(":")
    if not name:
        raise UserError(spec, "no dataset name", "use hf:NAME or hf:NAME:CONFIG")
    try:
        import datasets
    except ImportError:
        raise UserError(
            spec, "the Hugging Face 'datasets' package is not installed",
            "pip install datasets, or export the data to .jsonl/.csv and pass that file",
        ) from None  # fmt: skip
    try:
        ds = datasets.load_dataset(name, config or None, split=split)
    except Exception as e:  # network, unknown name, unknown split: all user-fixable
        problem = f"cannot load split {split!r}: {_first_line(e)}"
        fix = "check the name, config and --split, and that the hub is reachable"
        raise UserError(spec, problem, fix) from None
    return [(n, dict(row)) for n, row in enumerate(ds, start=1)], name


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
