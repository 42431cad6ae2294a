"""Named token positions -> indices into the unpadded sequence (prompt + generated ids).

Pure python on purpose: the capture code, the bundle checks and the tests all share these
rules, and none of them should need torch to know where `exact_answer_last` is.

Indices count from 0 over the full sequence of length ``T = prompt_len + gen_len``. The
generated ids include the stop token (e.g. EOS) when one was produced, so ``-1`` is usually
EOS, as in the study. A position that cannot be resolved for an example is reported as
missing with a reason; it never falls back to another position (the original code's
silent fallback to ``last_q`` is one of the bugs we avoid).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from probeheat.errors import UserError
from probeheat.selection import expand_new_positions

#: The study's 15 positions, in its column order.
BUILTIN_POSITIONS: tuple[str, ...] = (
    "last_q",
    "first_answer",
    "second_answer",
    "exact_answer_before_first",
    "exact_answer_first",
    "exact_answer_last",
    "exact_answer_after_last",
    *(str(-k) for k in range(8, 0, -1)),
)

#: Anchors a user may offset with ``+K`` / ``-K``.
ANCHORS: tuple[str, ...] = BUILTIN_POSITIONS[:7]

_FROM_END = re.compile(r"^-([1-9][0-9]*)$")
_OFFSET = re.compile(r"^([a-z_]+)([+-])([1-9][0-9]*)$")

VALID_FORMS = (
    "a builtin (" + ", ".join(ANCHORS) + ", -8..-1), "
    "-K for K >= 1 (e.g. -12), ANCHOR+K / ANCHOR-K (e.g. exact_answer_last+2, last_q-3), "
    "or 'all'"
)

# Smallest possible value of (index - prompt_len) for each anchor over all examples; it
# tells the capture code how many trailing prompt tokens it must keep.
_ANCHOR_MIN_OFFSET = {
    "last_q": -1,
    "first_answer": 0,
    "second_answer": 1,
    "exact_answer_before_first": -1,  # span starting at generated token 0 -> last_q
    "exact_answer_first": 0,
    "exact_answer_last": 0,
    "exact_answer_after_last": 0,  # clamped to T-1, which is >= prompt_len when a span exists
}


@dataclass(frozen=True)
class _Parsed:
    anchor: str | None  # None for -K
    delta: int  # offset from the anchor, or K for -K


def _parse_one(name: str) -> _Parsed | None:
    if name in ANCHORS:
        return _Parsed(name, 0)
    m = _FROM_END.match(name)
    if m:
        return _Parsed(None, int(m.group(1)))
    m = _OFFSET.match(name)
    if m and m.group(1) in ANCHORS:
        k = int(m.group(3))
        return _Parsed(m.group(1), k if m.group(2) == "+" else -k)
    return None


def _parse(name: str) -> _Parsed:
    parsed = _parse_one(name)
    if parsed is None:
        raise ValueError(f"not a position name: {name!r}")
    return parsed


def parse_positions(names: str | list[str] | tuple[str, ...], where: str = "--positions"
                    ) -> list[str]:
    """Validate position names (a selection string or a list of names): expand 'all' /
    'default' and ranges such as ``-12:-9``; drop duplicates keeping order."""
    if not isinstance(names, str) and not names:
        raise UserError(where, "no positions given", f"use {VALID_FORMS}")
    out = expand_new_positions(names, BUILTIN_POSITIONS, where)
    for name in out:
        if _parse_one(name) is None:
            raise UserError(where, f"unknown position {name!r}", f"use {VALID_FORMS}")
    return out


@dataclass
class Resolved:
    """Every requested name is in exactly one of `index` and `missing`; `clamped` names the
    present ones a rule moved (exact_answer_after_last when the span ends the sequence)."""

    index: dict[str, int] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    clamped: list[str] = field(default_factory=list)


def _tokens(n: int) -> str:
    return f"{n} token" + ("" if n == 1 else "s")


def _anchor_index(
    anchor: str, prompt_len: int, gen_len: int, span: tuple[int, int] | None, no_span: str
) -> int | str:
    """The anchor's index, or a reason string when it does not exist for this example."""
    t = prompt_len + gen_len
    if anchor == "last_q":
        return prompt_len - 1 if prompt_len >= 1 else "prompt is empty"
    if anchor == "first_answer":
        return prompt_len if gen_len >= 1 else f"answer has {_tokens(gen_len)}"
    if anchor == "second_answer":
        return prompt_len + 1 if gen_len >= 2 else f"answer has {_tokens(gen_len)}"
    if span is None:
        return no_span
    s, e = span
    if anchor == "exact_answer_before_first":
        idx = prompt_len + s - 1
        return idx if idx >= 0 else "exact answer starts the sequence"
    if anchor == "exact_answer_first":
        return prompt_len + s
    if anchor == "exact_answer_last":
        return prompt_len + e
    return min(prompt_len + e + 1, t - 1)  # exact_answer_after_last, clamped as in the study


def _check_span(span: tuple[int, int] | None, gen_len: int) -> None:
    if span is None:
        return
    s, e = span
    if not (0 <= s <= e < gen_len):
        raise ValueError(f"exact span {span} is not inside the {gen_len} generated tokens")


def resolve_positions(
    names: list[str] | tuple[str, ...],
    *,
    prompt_len: int,
    gen_len: int,
    span: tuple[int, int] | None,
    span_missing_reason: str | None = None,
) -> Resolved:
    """Resolve position names for one example.

    `span` is the exact-answer span (s, e), inclusive, in generated-token indices.
    """
    if prompt_len < 0 or gen_len < 0:
        raise ValueError(f"negative length: prompt_len={prompt_len}, gen_len={gen_len}")
    _check_span(span, gen_len)
    t = prompt_len + gen_len
    no_span = span_missing_reason or "no exact answer"
    out = Resolved()
    for name in names:
        p = _parse(name)
        if p.anchor is None:
            idx: int | str = t - p.delta
            if idx < 0:
                idx = f"sequence has {_tokens(t)}"
        else:
            idx = _anchor_index(p.anchor, prompt_len, gen_len, span, no_span)
            if isinstance(idx, int) and p.delta:
                idx += p.delta
                if not 0 <= idx < t:
                    idx = f"{name} falls outside the sequence ({_tokens(t)})"
        if isinstance(idx, int):
            out.index[name] = idx
            if p.anchor == "exact_answer_after_last" and prompt_len + span[1] + 1 > t - 1:
                out.clamped.append(name)
        else:
            out.missing[name] = idx
    return out


def prompt_lookback(names: list[str] | tuple[str, ...]) -> int:
    """How many trailing prompt tokens a capture must keep to serve these positions.

    Positions past the prompt are served from the generated tokens, which a capture
    always keeps. E.g. last_q -> 1, -8 -> 8 (an answer of 0 tokens puts -8 in the prompt),
    last_q-3 -> 4, first_answer -> 0.
    """
    deepest = 0
    for name in names:
        p = _parse(name)
        min_offset = -p.delta if p.anchor is None else _ANCHOR_MIN_OFFSET[p.anchor] + p.delta
        deepest = max(deepest, -min_offset)
    return deepest


def to_padded(index: int, *, pad_left: int) -> int:
    """Index in a padded batch row: left padding shifts by the pad count, right keeps it."""
    if pad_left < 0:
        raise ValueError(f"pad_left must be >= 0, got {pad_left}")
    return index + pad_left
