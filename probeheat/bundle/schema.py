"""Checking what a bundle's JSON says before any of it is used (artifacts/FORMAT.md).

Every reader goes through ``load_json`` (bounded size and nesting, one-line errors) and the
``check_*`` functions below (required keys, types, ranges). A check returns nothing or
raises ``UserError`` naming the file, the problem and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from ..errors import UserError
from .manifest import DAMAGED_FIX

MAX_JSON_BYTES = 1 << 30  # a shard's records or a grid's splits are MBs; 1 GiB is not a bundle
MAX_DEPTH = 64  # FORMAT.md's deepest value (a skipped-row list in run.json) is 4 levels down
STORE_DTYPES = ("float32", "float16", "bfloat16")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

Check = Callable[[object], str | None]  # None when the value is right, else what is wrong


def load_json(path: Path, max_bytes: int = MAX_JSON_BYTES) -> object:
    """Parse a JSON file of a bundle: UTF-8, at most ``max_bytes``, nested at most MAX_DEPTH."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise UserError(str(path), f"{size} bytes is more than a bundle file holds "
                            f"({max_bytes})", DAMAGED_FIX)
        value = json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(str(path), "file listed in the manifest is missing", DAMAGED_FIX) from None
    except UnicodeDecodeError:
        raise UserError(str(path), "not UTF-8 text", DAMAGED_FIX) from None
    except json.JSONDecodeError as exc:
        raise UserError(str(path), f"invalid JSON (line {exc.lineno}: {exc.msg})",
                        DAMAGED_FIX) from None
    except RecursionError:
        raise UserError(str(path), f"JSON nested more than {MAX_DEPTH} levels deep",
                        DAMAGED_FIX) from None
    except OSError as exc:
        raise UserError(str(path), f"cannot read ({exc.strerror or exc})",
                        "check the file's permissions") from None
    if depth(value) > MAX_DEPTH:
        raise UserError(str(path), f"JSON nested more than {MAX_DEPTH} levels deep", DAMAGED_FIX)
    return value


def depth(value: object) -> int:
    """Nesting depth of a parsed JSON value (iterative: deep input cannot overflow the stack)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


# --- small checkers ------------------------------------------------------------------------

def is_int(low: int | None = None) -> Check:
    def check(v):
        if isinstance(v, bool) or not isinstance(v, int):
            return f"{v!r} is not an integer"
        return f"{v} is below {low}" if low is not None and v < low else None
    return check


def is_str(v) -> str | None:
    return None if isinstance(v, str) else f"{v!r} is not a string"


def is_bool(v) -> str | None:
    return None if isinstance(v, bool) else f"{v!r} is not true/false"


def one_of(*values) -> Check:
    return lambda v: None if v in values else f"{v!r} is not one of {', '.join(map(str, values))}"


def list_of(item: Check, *, unique: bool = False, nonempty: bool = False) -> Check:
    def check(v):
        if not isinstance(v, list):
            return f"{_short(v)} is not a list"
        if nonempty and not v:
            return "is empty"
        for x in v:
            if problem := item(x):
                return problem
        if unique and len({json.dumps(x, sort_keys=True) for x in v}) != len(v):
            return "lists an entry twice"
        return None
    return check


def _short(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def require(doc: dict, fields: dict[str, Check], where: str,
            optional: dict[str, Check] | None = None) -> None:
    """Raise a one-line UserError for the first required key missing or any key wrong."""
    if not isinstance(doc, dict):
        raise UserError(where, "is not a JSON object", DAMAGED_FIX)
    for key, check in fields.items():
        if key not in doc:
            raise UserError(where, f"lacks {key!r}", DAMAGED_FIX)
        if problem := check(doc[key]):
            raise UserError(where, f"{key!r}: {problem}", DAMAGED_FIX)
    for key, check in (optional or {}).items():
        if key in doc and (problem := check(doc[key])):
            raise UserError(where, f"{key!r}: {problem}", DAMAGED_FIX)


# --- the documents -------------------------------------------------------------------------

def _file_entry(v) -> str | None:
    if not isinstance(v, dict):
        return "is not an object"
    if not isinstance(v.get("sha256"), str) or not _HEX64.match(v["sha256"]):
        return "sha256 is not 64 hex digits"
    problem = is_int(-1)(v.get("size"))  # -1: size unknown (a migrated version-0 manifest)
    return f"size {problem}" if problem else None


def check_manifest_fields(manifest: dict, where: str) -> None:
    require(manifest, {"kind": is_str, "format_version": is_str,
                       "files": lambda v: None if isinstance(v, dict) else "is not an object"},
            where, optional={"id": is_str, "created": is_str, "writer": is_str})
    for name, entry in manifest["files"].items():
        if problem := _file_entry(entry):
            raise UserError(where, f"entry for {name!r}: {problem}", DAMAGED_FIX)


def nullable(check: Check) -> Check:
    return lambda v: None if v is None else check(v)


def is_number(v) -> str | None:
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    return None if ok else f"{_short(v)} is not a number"


def obj(required: dict[str, Check] | None = None,
        optional: dict[str, Check] | None = None) -> Check:
    """A JSON object: required keys present and right, optional keys right where present."""
    def check(v):
        if not isinstance(v, dict):
            return f"{_short(v)} is not an object"
        for key, field_check in (required or {}).items():
            if key not in v:
                return f"lacks {key!r}"
            if problem := field_check(v[key]):
                return f"{key!r}: {problem}"
        for key, field_check in (optional or {}).items():
            if key in v and (problem := field_check(v[key])):
                return f"{key!r}: {problem}"
        return None
    return check


def pair_of(first: Check, second: Check) -> Check:
    def check(v):
        if not isinstance(v, list) or len(v) != 2:
            return f"{_short(v)} is not a pair"
        return first(v[0]) or second(v[1])
    return check


def _sites(v) -> str | None:
    if not isinstance(v, dict) or "resid" not in v:
        return "is not an object with a 'resid' entry"
    for site, layers in v.items():
        if problem := list_of(is_int(0), unique=True, nonempty=True)(layers):
            return f"{site}: {problem}"
    return None


STR, OPT_STR, INT, BOOL = is_str, nullable(is_str), is_int(), is_bool
STRINGS = lambda v: None if isinstance(v, dict) and all(  # noqa: E731
    isinstance(x, str) for x in v.values()) else f"{_short(v)} is not an object of strings"

MODEL = obj(optional={"model_id": STR, "revision": OPT_STR, "source": STR, "architecture": STR,
                      "model_type": OPT_STR, "n_layers": is_int(0), "hidden_size": is_int(1),
                      "is_chat": BOOL, "dtype": STR, "device": STR, "n_parameters": is_int(0),
                      "id": STR, "name": STR})
DATASET = obj(optional={"name": STR, "source": STR, "license": STR, "content_hash": STR,
                        "n_rows": is_int(0), "skipped": list_of(pair_of(INT, STR)),
                        "limit": nullable(is_int(1)), "seed": INT})
RUN_FIELDS: dict[str, Check] = {
    "positions": list_of(is_str, unique=True, nonempty=True),
    "layers": list_of(is_int(0), unique=True, nonempty=True),
    "sites": _sites,
    "hidden_size": is_int(1),
    "dtype": one_of(*STORE_DTYPES),
}
RUN_FINISHED: dict[str, Check] = {"n_examples": is_int(0), "n_correct": is_int(0)}
RUN_OPTIONAL: dict[str, Check] = {
    "id": STR, "fingerprint": STR, "model": MODEL, "dataset": DATASET, "created": STR,
    "finished": STR, "synthetic": BOOL, "layer_meaning": STR, "compute_dtype": STR, "seed": INT,
    "grader": STR, "exact_answer_policy": STR, "extractor_model": OPT_STR, "versions": STRINGS,
    "command": list_of(STR),
    "tokenizer": obj(optional={"id": STR, "class": STR, "chat_template": BOOL,
                               "vocab_size": is_int(0), "padding": STR}),
    "prompt": obj(optional={"template": STR, "kind": STR, "few_shot": list_of(pair_of(STR, STR)),
                            "stop_on_newline": BOOL}),
    "generation": obj(optional={"greedy": BOOL, "max_new_tokens": is_int(1),
                                "batch_size": is_int(1), "capture": STR}),
    "samples": nullable(obj({"k": is_int(2), "layers": list_of(is_int(0), unique=True,
                                                               nonempty=True),
                             "positions": list_of(is_str, unique=True, nonempty=True)},
                            {"temperature": is_number, "top_p": is_number, "top_k": is_int(0),
                             "site": one_of("resid"), "seed": INT, "generator": STR,
                             "greedy_in_samples": BOOL, "capture": STR, "error_types": STR})),
    "heads": nullable(obj({"n_heads": is_int(1), "head_dim": is_int(1)},
                          {"module": STR, "what": STR})),
    "baselines": nullable(obj(optional={"absent": STR, "category_column": OPT_STR,
                                        "group_column": OPT_STR, "p_true": obj(),
                                        "token_logprobs": STR})),
}


def check_run_meta(meta: dict, where: str, finished: bool = True) -> None:
    require(meta, {**RUN_FIELDS, **(RUN_FINISHED if finished else {})}, where, RUN_OPTIONAL)
    if finished and meta["n_correct"] > meta["n_examples"]:
        raise UserError(where, "n_correct is larger than n_examples", DAMAGED_FIX)
    if meta["sites"]["resid"] != meta["layers"]:
        raise UserError(where, "'layers' and sites.resid differ", DAMAGED_FIX)
    if "head" in meta["sites"] and not meta.get("heads"):
        raise UserError(where, "site 'head' without 'heads' (n_heads, head_dim)", DAMAGED_FIX)
    samples = meta.get("samples")
    if samples and not set(samples["layers"]) <= set(meta["layers"]):
        raise UserError(where, "samples.layers names layers the run does not have", DAMAGED_FIX)


_CELL = obj({"layer": INT, "position": STR, "reason": STR})
_SPLIT = obj({"train_ids": list_of(STR), "test_ids": list_of(STR)}, {"seed": nullable(INT)})
_RUN_REF = obj({"id": STR, "path": STR}, {"content_hash": STR, "answers_from": STR})
PROBE = obj(optional={
    "solver": STR, "objective": STR, "C": is_number, "standardize": BOOL, "preset": OPT_STR,
    "test_fraction": nullable(is_number), "seeds": list_of(INT), "site": STR, "tol": is_number,
    "max_iter": is_int(1), "interval": STR, "min_train_per_class": is_int(0),
    "min_test_per_class": is_int(0), "transfer": STR, "family": STR, "correction": STR,
    "device": STR, "exclude_clamped": BOOL, "permutations": is_int(0), "target": STR})
_STR_OR_STRINGS = lambda v: None if isinstance(v, str) else STRINGS(v)  # noqa: E731
_NUMBERS = lambda v: None if isinstance(v, dict) and not any(  # noqa: E731
    is_number(x) for x in v.values()) else f"{_short(v)} is not an object of numbers"
_CALIBRATION = obj(optional={
    "metrics": list_of(is_str, unique=True), "lower_is_better": list_of(is_str, unique=True),
    "bins": is_int(1), "fprs": _NUMBERS, "n_boot": is_int(1), "probabilities": STR,
    "ece": STR, "recall": STR, "interval": STR, "reliability": STR})
_HEADS = obj({"n_heads": is_int(1), "head_dim": is_int(1),
              "positions": list_of(is_str, unique=True, nonempty=True)},
             {"module": nullable(STR), "columns": STR})

GRID_FIELDS: dict[str, Check] = {
    "layers": list_of(is_int(), unique=True, nonempty=True),
    "positions": list_of(is_str, unique=True, nonempty=True),
    "metrics": list_of(is_str, unique=True, nonempty=True),
}
GRID_OPTIONAL: dict[str, Check] = {
    "id": STR, "nan_reasons": list_of(_CELL), "splits": list_of(_SPLIT), "run": _RUN_REF,
    "train_run": _RUN_REF, "test_run": _RUN_REF, "train_dataset": DATASET,
    "label": STR, "target": STR, "label_meaning": STR, "score": STR, "title": STR, "probe": PROBE,
    "model": MODEL, "dataset": DATASET, "versions": STRINGS, "created": STR,
    "not_converged": list_of(obj({"layer": INT, "position": STR}, {"seed": nullable(INT)})),
    "heads": _HEADS, "calibration": _CALIBRATION,
    "baselines": obj(optional={"names": list_of(is_str, unique=True), "descriptions": STRINGS,
                               "absent": _STR_OR_STRINGS, "best": OPT_STR,
                               "orientation": STR}),
    "controls": obj(optional={"paired_test": STR, "permutation": obj(optional={
        "cells": STR, "k": is_int(0), "median": list_of(nullable(is_number)),
        "p95": list_of(nullable(is_number)), "split_seed": nullable(INT), "what": STR})}),
}


def check_grid_meta(meta: dict, where: str) -> None:
    require(meta, GRID_FIELDS, where, GRID_OPTIONAL)
    heads = meta.get("heads")
    if heads and meta["positions"] != [f"{p}/h{h}" for p in heads["positions"]
                                       for h in range(heads["n_heads"])]:
        raise UserError(where, "a head grid's positions must be POSITION/hH for each of "
                        "heads.positions and each head, position-major", DAMAGED_FIX)


_GEN_RUN = obj({"name": STR}, {"id": STR, "path": STR, "content_hash": STR, "layer": INT,
                             "position": STR, "best_auc": nullable(is_number),
                             "dataset": nullable(DATASET)})


def check_generalization_meta(meta: dict, where: str) -> None:
    require(meta, {"train_runs": list_of(_GEN_RUN, nonempty=True),
                   "test_runs": list_of(_GEN_RUN, nonempty=True)}, where)


_STEER_CELL = obj({"layer": is_int(0), "position": STR},
                  {"site": STR, "hook": STR, "grid_auc": nullable(is_number),
                   "refit_auc": nullable(is_number), "max_score_diff": nullable(is_number),
                   "n_test": is_int(0)})
_STEER_DIRECTION = obj({"name": STR, "kind": one_of("probe", "random")},
                       {"seed": nullable(INT), "sigma": nullable(is_number)})
STEER_FIELDS: dict[str, Check] = {
    "run": _RUN_REF, "grid": _RUN_REF, "cell": _STEER_CELL,
    "alphas": list_of(is_number, unique=True, nonempty=True),
    "directions": list_of(_STEER_DIRECTION, nonempty=True),
    "at": one_of("generated", "prompt"),
    "questions": obj({"set": one_of("test", "all"), "n": is_int(1)},
                     {"split_seed": nullable(INT), "limit": nullable(is_int(1))}),
    "verdict": STR,
}
STEER_OPTIONAL: dict[str, Check] = {
    "id": STR, "model": MODEL, "dataset": DATASET, "versions": STRINGS, "alpha_unit": STR,
    "at_meaning": STR, "created": STR,
    "timing": lambda v: None if isinstance(v, dict) else f"{_short(v)} is not an object",
}


def check_steer_meta(meta: dict, where: str) -> None:
    """steer.json (FORMAT.md, Steer bundle): alphas sorted with 0 among them, the probe's
    direction first and every other one random."""
    require(meta, STEER_FIELDS, where, STEER_OPTIONAL)
    alphas, kinds = meta["alphas"], [d["kind"] for d in meta["directions"]]
    if 0 not in alphas or alphas != sorted(alphas):
        raise UserError(where, "'alphas' must be sorted and hold 0 (the unsteered answers)",
                        DAMAGED_FIX)
    if kinds[0] != "probe" or "probe" in kinds[1:]:
        raise UserError(where, "'directions' must start with the probe's and hold it once",
                        DAMAGED_FIX)


_METHOD_ROW = obj({"accuracy": is_number, "lo": is_number, "hi": is_number, "n": is_int(0)},
                  {"p_vs_greedy": nullable(is_number), "better": is_int(0), "worse": is_int(0),
                   "what": STR})
SELECTION_FIELDS: dict[str, Check] = {
    "run": _RUN_REF, "grid": _RUN_REF,
    "cell": obj({"layer": INT, "position": STR}, {"chosen": STR, "test_auc": nullable(is_number),
                                                  "refit_max_abs_diff": is_number}),
    "samples": obj({"k": is_int(2)}, {"temperature": is_number, "top_p": is_number,
                                      "top_k": is_int(0)}),
    "questions": obj({"n": is_int(1)}, {"split_seed": nullable(INT), "no_scorable_sample": INT}),
    "table": obj({m: _METHOD_ROW for m in ("greedy", "random", "majority", "probe")}),
}
SELECTION_OPTIONAL: dict[str, Check] = {
    "id": STR, "model": MODEL, "dataset": DATASET, "versions": STRINGS, "created": STR,
    "interval": STR, "paired_test": STR, "rules": STRINGS, "seed": INT,
    "by_type": obj(optional={}), "caution": STR,
}


def check_selection_meta(meta: dict, where: str) -> None:
    """selection.json (FORMAT.md, Selection bundle): every method's accuracy in [0, 1]
    inside its interval."""
    require(meta, SELECTION_FIELDS, where, SELECTION_OPTIONAL)
    for method, row in meta["table"].items():
        if not 0 <= row["lo"] <= row["accuracy"] <= row["hi"] <= 1:
            raise UserError(where, f"table.{method}: accuracy outside [0, 1] or outside its "
                            "interval", DAMAGED_FIX)
