"""What a grid's probes predict (``probe --target``).

* ``correct`` (the default, the study's heatmaps): label 1 = the model's greedy answer was
  wrong; a cell's score is the log-odds of an error.
* ``error-type:NAME``: label 1 = the question has error type NAME (one vs rest), from the
  run's sampled answers (``run --samples K``; the types and their rules are in
  probeheat.data.error_types). The features are still the greedy answer's hidden states,
  as in the study.
* ``error-type``: one grid per type of the paper (refuses, consistently-correct,
  consistently-wrong, competing, many-answers), written side by side under ``--out``.
"""

from __future__ import annotations

import numpy as np

from ..bundle.records import error_labels
from ..data.error_types import PAPER_TYPES, check_type_name, has_type
from ..errors import UserError

PREFIX = "error-type"


def check_target(target: str) -> str:
    """A valid --target value (refused in one line before any bundle is read)."""
    target = str(target).strip()
    if target in ("correct", PREFIX):
        return target
    if target.startswith(PREFIX + ":"):
        check_type_name(target[len(PREFIX) + 1:], "--target")
        return target
    raise UserError("--target", f"unknown target {target!r}",
                    "use correct, error-type or error-type:NAME")


def expand_target(target: str) -> list[str]:
    """``error-type`` -> one target per paper type; anything else -> itself."""
    return [f"{PREFIX}:{name}" for name in PAPER_TYPES] if target == PREFIX else [target]


def type_of(target: str) -> str | None:
    return target[len(PREFIX) + 1:] if target.startswith(PREFIX + ":") else None


def class_names(target: str) -> tuple[str, str]:
    """What label 1 and label 0 are called in messages."""
    name = type_of(target)
    return ("incorrect", "correct") if name is None else (f"of type {name}", "of other types")


def target_labels(run, target: str) -> np.ndarray:
    """Labels of a run's examples for a target; refuses a run with one class only."""
    name = type_of(target)
    records = run.records()
    positive, negative = class_names(target)
    if name is None:
        y = error_labels(records)
    else:
        if run.samples is None or not all("error_type" in r for r in records):
            raise UserError(str(run.path), f"--target {target} needs sampled answers, and this "
                            "run has none", "make the run with probeheat run --samples K")
        y = np.array([has_type(r["error_type"]["types"], name) for r in records],
                     dtype=np.int64)
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == y.size:
        kind = negative if n_pos == 0 else positive
        if name is None:
            raise UserError(str(run.path), f"all {y.size} answers are {kind}: a probe needs "
                            "both correct and incorrect answers", "run more (or harder) "
                            "questions")
        raise UserError(str(run.path), f"all {y.size} questions are {kind}: a probe needs "
                        "both kinds", "run more questions, or more samples")
    return y


def target_meta(target: str) -> dict:
    """What a grid of this target says its label and score mean."""
    name = type_of(target)
    if name is None:
        return {"target": "correct", "label": "incorrect",
                "label_meaning": "1 = the model's answer was incorrect (error detection, as "
                                 "in the study)",
                "score": "log-odds that the answer is incorrect (probe decision function)"}
    return {"target": target, "label": f"error type {name}",
            "label_meaning": f"1 = the question has error type {name} over its sampled "
                             "answers (one vs rest; probeheat.data.error_types)",
            "score": f"log-odds that the question has error type {name} (probe decision "
                     "function)"}
