"""Graders: decide whether a generated answer is correct, and where the gold alias sits.

The study grades TriviaQA-style answers by lower-cased substring match. Our default,
`alias_match`, compares normalised text on word boundaries instead, so "Rome" does not
grade "Romania" correct and "Niger" does not grade "Nigeria" correct. The study's plain
rule is kept as `substring` for faithful reproductions.

Every grader returns the character span of the earliest alias occurrence in the RAW
answer text: the exact-answer span (and so the `exact_answer_*` positions) of a correct
answer is built from it.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from probeheat.errors import UserError

ARTICLES = frozenset({"a", "an", "the"})


@dataclass(frozen=True)
class GradeResult:
    correct: bool
    matched_alias: str | None = None
    char_span: tuple[int, int] | None = None  # [start, end) in the raw answer


@functools.lru_cache(maxsize=65536)
def fold_char(ch: str) -> str:
    """One character casefolded, decomposed (NFKD) and stripped of accents, repeated until
    nothing changes, so that folding folded text changes nothing: casefold and NFKD do not
    commute (U+1D71C MATHEMATICAL ITALIC CAPITAL ALPHA decomposes to a capital alpha, which
    casefolds to a small one)."""
    out = ch
    for _ in range(8):
        folded = "".join(c for c in unicodedata.normalize("NFKD", out.casefold())
                         if not unicodedata.combining(c))
        if folded == out:
            break
        out = folded
    return "".join(c if c.isalnum() else " " for c in out)


def _fold_chars(text: str) -> tuple[str, list[int]]:
    """Casefold, strip accents, turn punctuation into spaces; remember each char's origin."""
    chars: list[str] = []
    origin: list[int] = []
    for i, ch in enumerate(text):
        folded = fold_char(ch)
        chars.append(folded)
        origin.extend([i] * len(folded))
    return "".join(chars), origin


def normalize_with_map(text: str) -> tuple[str, list[int]]:
    """`normalize(text)` plus, for each of its characters, the index of the raw character
    it came from (spaces between words map to the next word's first raw character)."""
    folded, origin = _fold_chars(text)
    out: list[str] = []
    out_origin: list[int] = []
    for m in re.finditer(r"\S+", folded):
        if m.group() in ARTICLES:
            continue
        if out:
            out.append(" ")
            out_origin.append(origin[m.start()])
        out.append(m.group())
        out_origin.extend(origin[m.start() : m.end()])
    return "".join(out), out_origin


def normalize(text: str) -> str:
    """Casefold, strip accents, punctuation -> space, drop a/an/the, collapse spaces."""
    return normalize_with_map(text)[0]


def find_normalized(needle: str, text: str) -> tuple[int, int] | None:
    """Earliest word-boundary occurrence of normalised `needle` in `text`, as a raw
    [start, end) span of `text`; None when absent or when `needle` normalises to ''."""
    key = normalize(needle)
    if not key:
        return None
    norm, origin = normalize_with_map(text)
    for m in re.finditer(r"(?<!\S)" + re.escape(key) + r"(?!\S)", norm):
        return origin[m.start()], origin[m.end() - 1] + 1
    return None


def _earliest(hits: list[tuple[tuple[int, int], str]]) -> GradeResult:
    if not hits:
        return GradeResult(False)
    # earliest start; at a tie the longer alias ("New York City" over "New York")
    (start, end), alias = min(hits, key=lambda h: (h[0][0], -h[0][1]))
    return GradeResult(True, alias, (start, end))


def alias_match(answer: str, aliases: Sequence[str]) -> GradeResult:
    """Correct when a normalised alias occurs in the normalised answer on word boundaries."""
    hits = []
    for alias in aliases:
        span = find_normalized(alias, answer)
        if span is not None:
            hits.append((span, alias))
    return _earliest(hits)


def substring(answer: str, aliases: Sequence[str]) -> GradeResult:
    """The study's TriviaQA rule: a lower-cased alias is a substring of the answer."""
    hits = []
    for alias in aliases:
        if not alias.strip():
            continue
        m = re.search(re.escape(alias), answer, flags=re.IGNORECASE)
        if m:
            hits.append(((m.start(), m.end()), alias))
    return _earliest(hits)


Grader = Callable[[str, Sequence[str]], GradeResult]

GRADERS: dict[str, Grader] = {"alias_match": alias_match, "substring": substring}
DEFAULT_GRADER = "alias_match"


def get_grader(name: str) -> Grader:
    try:
        return GRADERS[name]
    except KeyError:
        raise UserError(
            "--grader", f"unknown grader {name!r}", "use one of: " + ", ".join(GRADERS)
        ) from None


def grade(answer: str, aliases: Sequence[str], grader: str = DEFAULT_GRADER) -> GradeResult:
    return get_grader(grader)(answer, aliases)
