"""Error types from resampled answers: the study's rules, restated.

A question answered K times by sampling gets counts (``sample_counts``) and types
(``error_types``). The rules are those of the study's public code (technion-cs-nlp/LLMsKnow,
MIT licence; ``resamples_utils.get_error_stats`` and ``get_types_of_mistakes``), written
again here:

* the greedy answer is not one of the K samples (it is graded separately);
* correct samples form ONE group of size C, never clustered;
* wrong samples without an exact answer are dropped, except refusals, which count under
  the key ``NO ANSWER``; the others are clustered in sample order: a string already a
  key adds one to that key; otherwise one is added to EVERY key that contains it or is
  contained in it (so one answer may count for several keys); otherwise it starts a new
  key. probeheat compares normalised strings (``graders.normalize``: case, accents,
  punctuation, articles) where the study compared lower-cased raw strings;
* W = the largest key's count (0 without keys), D = the number of keys (distinct wrong
  answers, NO ANSWER included);
* with H = K // 2, T = K // 3, S = K // 6, each type is an independent test, so a question
  can have several types or none.

probeheat's names, the study's code names and the paper's letters:

=============================  ==========================  ====  ==============================
name                           study                       type  rule
=============================  ==========================  ====  ==============================
refuses                        no_answer_is_largest        A     NO ANSWER is a largest key and
                                                                 its count > C
correct-always                 right_is_largest_2          B1    C == K
correct-mostly                 right_is_largest_1          B2    C >= H and D > 0
wrong-always                   wrong_is_largest_2          C1    W >= H, not A, C == 0
wrong-mostly                   wrong_is_largest_1          C2    W >= H, not A, C > 0
competing                      closely_competing_answers   D     abs(C - W) <= S, C > S, W > S
many-never-correct             many_different_answers_2    E1    D >= T and C == 0
many-with-correct              many_different_answers_1    E2    D >= T - 1 and C > 0
=============================  ==========================  ====  ==============================

The paper's figures merge the pairs: ``consistently-correct`` = B1 or B2,
``consistently-wrong`` = C1 or C2, ``many-answers`` = E1 or E2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .graders import normalize

NO_ANSWER = "NO ANSWER"

TYPES = ("refuses", "correct-always", "correct-mostly", "wrong-always", "wrong-mostly",
         "competing", "many-never-correct", "many-with-correct")
MERGED = {"consistently-correct": ("correct-always", "correct-mostly"),
          "consistently-wrong": ("wrong-always", "wrong-mostly"),
          "many-answers": ("many-never-correct", "many-with-correct")}
# The paper's five types (A-E): what `probe --target error-type` fits, one grid each.
PAPER_TYPES = ("refuses", "consistently-correct", "consistently-wrong", "competing",
               "many-answers")
STUDY_NAMES = {"refuses": "no_answer_is_largest", "correct-always": "right_is_largest_2",
               "correct-mostly": "right_is_largest_1", "wrong-always": "wrong_is_largest_2",
               "wrong-mostly": "wrong_is_largest_1", "competing": "closely_competing_answers",
               "many-never-correct": "many_different_answers_2",
               "many-with-correct": "many_different_answers_1"}
ALL_NAMES = TYPES + tuple(MERGED)


@dataclass(frozen=True)
class Sample:
    """What the rules need of one sampled answer."""

    correct: bool
    exact_answer: str | None  # None: no exact answer
    refused: bool = False  # the exact-answer policy found a refusal (counts as NO ANSWER)


def cluster_wrong(answers: Sequence[str]) -> dict[str, int]:
    """The study's greedy clustering of wrong exact answers (see the module docstring)."""
    keys: dict[str, int] = {}
    for answer in answers:
        if answer in keys:
            keys[answer] += 1
            continue
        matched = False
        for key in keys:
            if answer in key or key in answer:
                keys[key] += 1
                matched = True
        if not matched:
            keys[answer] = 1
    return keys


def sample_counts(samples: Sequence[Sample]) -> dict:
    """C (correct), W (largest wrong key), D (distinct wrong keys), the NO ANSWER count and
    the wrong keys themselves, for one question's samples."""
    wrong = []
    for s in samples:
        if s.correct:
            continue
        if s.refused:
            wrong.append(NO_ANSWER)
        elif s.exact_answer is not None and normalize(s.exact_answer):
            wrong.append(normalize(s.exact_answer))
    keys = cluster_wrong(wrong)
    return {"n": len(samples), "correct": sum(s.correct for s in samples),
            "largest_wrong": max(keys.values(), default=0), "distinct_wrong": len(keys),
            "no_answer": keys.get(NO_ANSWER, 0), "wrong_answers": keys}


def error_types(counts: dict) -> list[str]:
    """The types (probeheat names, in TYPES order) a question with these counts has."""
    n, c, w, d = counts["n"], counts["correct"], counts["largest_wrong"], counts["distinct_wrong"]
    half, third, sixth = n // 2, n // 3, n // 6
    keys = counts.get("wrong_answers", {})
    no_answer = counts.get("no_answer", 0)
    refuses = NO_ANSWER in keys and no_answer == max(keys.values()) and no_answer > c
    rules = {
        "refuses": refuses,
        "correct-always": c == n,
        "correct-mostly": c >= half and d > 0,
        "wrong-always": w >= half and not refuses and c == 0,
        "wrong-mostly": w >= half and not refuses and c > 0,
        "competing": abs(c - w) <= sixth and c > sixth and w > sixth,
        "many-never-correct": d >= third and c == 0,
        "many-with-correct": d >= third - 1 and c > 0,
    }
    return [name for name in TYPES if rules[name]]


def has_type(types: Sequence[str], name: str) -> bool:
    """Whether a question with these (fine) types belongs to `name` (fine or merged)."""
    return any(t in types for t in MERGED.get(name, (name,)))


def check_type_name(name: str, where: str) -> str:
    from ..errors import UserError

    if name not in ALL_NAMES:
        raise UserError(where, f"unknown error type {name!r}",
                        f"use one of {', '.join(ALL_NAMES)}")
    return name
