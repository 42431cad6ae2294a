"""Graders: decide whether a generated answer is correct, and where the gold alias sits.

The study grades TriviaQA-style answers by lower-cased substring match. Our default,
`alias_match`, compares normalised text on word boundaries instead, so "Rome" does not
grade "Romania" correct and "Niger" does not grade "Nigeria" correct. The study's plain
rule is kept as `substring` for faithful reproductions. Two more follow the study's rules
for its classification-style datasets: `forced_choice` (WinoBias: the option named first
decides) and `sentiment` (IMDB: the label the answer starts with, else the first named).

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


class Aliases(list):
    """Gold aliases that also carry the wrong options of a forced choice in ``.wrong``.

    Graders are called with an example's answers only, so a dataset whose grading needs
    the competing option (WinoBias: the other occupation) hands it over this way. It is an
    ordinary list of the gold aliases everywhere else (JSON, records, other graders).
    """

    def __init__(self, gold: Sequence[str] = (), wrong: Sequence[str] = ()):
        super().__init__(gold)
        self.wrong = tuple(wrong)


def _find_folded(text: str, option: str) -> tuple[int, int] | None:
    """[start, end) of the first case-insensitive occurrence of `option` in `text`."""
    option = option.strip()
    if not option:
        return None
    m = re.search(re.escape(option), text, flags=re.IGNORECASE)
    return m.span() if m else None


def forced_choice(answer: str, aliases: Sequence[str]) -> GradeResult:
    """The study's WinoBias rule: of the gold option and the wrong ones (``Aliases.wrong``),
    the one the answer names first decides (case-insensitive substrings; at the same start
    the longer one). Correct when that is a gold alias; naming neither is wrong."""
    gold = [(span, alias) for alias in aliases if (span := _find_folded(answer, alias))]
    if not gold:
        return GradeResult(False)
    best = _earliest(gold)
    start, end = best.char_span
    for option in getattr(aliases, "wrong", ()):
        span = _find_folded(answer, option)
        if span is not None and (span[0], -span[1]) < (start, -end):
            return GradeResult(False)
    return best


SENTIMENTS = ("negative", "positive")
_LABEL_PREFIX = re.compile(r"\s*(?:Label:\s*)?")
_TOKEN_TRIM = ".</s>"  # characters the study trims off the first word (a '.', an EOS '</s>')


def _sentiment_label(answer: str) -> tuple[str, tuple[int, int]] | None:
    """(label, raw span) the study's IMDB rule reads from an answer, or None."""
    start = _LABEL_PREFIX.match(answer).end()
    word = re.compile(r"\S+").match(answer, start)
    if word is None:
        return None
    a, b = word.span()
    while a < b and answer[a] in _TOKEN_TRIM:
        a += 1
    while b > a and answer[b - 1] in _TOKEN_TRIM:
        b -= 1
    if answer[a:b] in SENTIMENTS:  # the first word, case-sensitive
        return answer[a:b], (a, b)
    if answer[a:b] == "neutral":
        return None
    m = re.search("|".join(SENTIMENTS), answer, flags=re.IGNORECASE)
    return (m.group().lower(), m.span()) if m else None


def sentiment(answer: str, aliases: Sequence[str]) -> GradeResult:
    """The study's IMDB rule: the first word (after a "Label:" lead-in, trimmed of '.' and
    '</s>' characters) if it is exactly "negative" or "positive" ("neutral" is no answer),
    else whichever of the two the answer names first, in any case. Correct when that
    label is the gold one."""
    found = _sentiment_label(answer)
    if found is None:
        return GradeResult(False)
    label, span = found
    alias = next((a for a in aliases if a.strip().lower() == label), None)
    return GradeResult(False) if alias is None else GradeResult(True, alias, span)


Grader = Callable[[str, Sequence[str]], GradeResult]

GRADERS: dict[str, Grader] = {"alias_match": alias_match, "substring": substring,
                              "forced_choice": forced_choice, "sentiment": sentiment}
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
