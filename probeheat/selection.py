"""One grammar for choosing layers and positions: `run`, `probe`, `export` and `view` use it.

A selection is a comma list of items; an item is one name or an inclusive range ``LO:HI``
whose ends may be left open (``8:`` is 8 to the last, ``:16`` the first to 16).

- Layers are integers: ``4:20``, ``0,8,16``, ``29:``.
- Positions are names: ``last_q,exact_answer_last+2,-1``. A range runs in the column order
  of what is there to choose from (a run's or grid's positions): ``first_answer:-1``.
  Where nothing exists yet (``run --positions``), a range of two from-the-end positions
  counts (``-12:-9`` is -12, -11, -10, -9) and any other range follows the study's order.
- ``all`` (or ``default``) is everything there is (for ``run``: the study's 15 positions).

Refused with one line each: an empty selection or item, a range that runs backwards, a
name that is not there to choose, and (where order matters) a name given twice.
Pure Python: no numpy, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .errors import UserError

ALL = ("all", "default")
RANGE_FIX = "write a range as LO:HI (inclusive, e.g. 4:20 or first_answer:-1) or a comma list"
_FROM_END = re.compile(r"^-([1-9][0-9]*)$")


@dataclass(frozen=True)
class Item:
    """One comma-separated item: ``lo == hi`` for a single name; None marks an open end."""

    lo: str | None
    hi: str | None
    is_range: bool


def parse(text: str, where: str) -> list[Item]:
    """Split a selection into items; refuses empty selections, items and double colons."""
    text = str(text)
    if not text.strip():
        raise UserError(where, "selects nothing", "name at least one, e.g. " + _example(where))
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise UserError(where, f"{text!r} has an empty item", "write a comma list without gaps")
    items = []
    for part in parts:
        if ":" not in part:
            items.append(Item(part, part, False))
            continue
        lo, _, hi = part.partition(":")
        if ":" in hi or not (lo.strip() or hi.strip()):
            raise UserError(where, f"{part!r} is not a range", RANGE_FIX)
        items.append(Item(lo.strip() or None, hi.strip() or None, True))
    return items


def _example(where: str) -> str:
    return "4:20" if "layer" in where else "last_q,exact_answer_last,-1"


def _as_items(spec: str | Sequence, where: str) -> list[Item]:
    if isinstance(spec, str):
        return parse(spec, where)
    items = [Item(str(x).strip(), str(x).strip(), False) for x in spec]
    if not items:
        raise UserError(where, "selects nothing", "name at least one, e.g. " + _example(where))
    return items


def _shown(available: Sequence) -> str:
    values = list(available)
    if values and all(isinstance(v, int) for v in values) and len(values) > 2 \
            and values == list(range(values[0], values[-1] + 1)):
        return f"{values[0]}..{values[-1]}"
    return ", ".join(map(str, values))


def _index(value, available: Sequence, where: str, source: str) -> int:
    if value not in available:
        raise UserError(where, f"{value!r} is not in {source}", f"available: {_shown(available)}")
    return list(available).index(value)


def _resolve(items: list[Item], available: Sequence, key: Callable, where: str,
             source: str) -> list:
    out: list = []
    for item in items:
        if not item.is_range and item.lo in ALL:
            out += list(available)
        elif not item.is_range:
            out.append(available[_index(key(item.lo), available, where, source)])
        else:
            start = 0 if item.lo is None else _index(key(item.lo), available, where, source)
            stop = len(available) - 1 if item.hi is None else \
                _index(key(item.hi), available, where, source)
            if start > stop:
                raise UserError(where, f"{item.lo}:{item.hi} runs backwards in {source}",
                                "write LO:HI with LO first")
            out += list(available[start:stop + 1])
    return out


def _no_repeats(values: list, where: str) -> list:
    twice = sorted({v for v in values if values.count(v) > 1}, key=str)
    if twice:
        raise UserError(where, f"names {', '.join(map(str, twice))} twice", "name each once")
    return values


def layer_number(text: str, where: str = "--layers") -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise UserError(where, f"{str(text).strip()!r} is not a layer number", RANGE_FIX) from None


def select_layers(spec: str | Sequence[int] | None, available: Sequence[int], *,
                  where: str = "--layers", source: str = "this grid") -> list[int]:
    """Layers in the order given: None = all; ``4:20``, ``8:``, ``0,4,8`` or a list of ints."""
    if spec is None:
        return list(available)
    items = _as_items(spec, where)
    chosen = _resolve(items, list(available), lambda t: layer_number(t, where), where, source)
    return _no_repeats(chosen, where)


def select_positions(spec: str | Sequence[str] | None, available: Sequence[str], *,
                     where: str = "--positions", source: str = "this grid") -> list[str]:
    """Positions in the order given, ranges in ``available``'s column order: None = all."""
    if spec is None:
        return list(available)
    items = _as_items(spec, where)
    chosen = _resolve(items, list(available), str.strip, where, source)
    return _no_repeats(chosen, where)


def from_end_range(lo: str, hi: str) -> list[str] | None:
    """``-12:-9`` -> ['-12', '-11', '-10', '-9']; None unless both ends count from the end."""
    a, b = _FROM_END.match(lo), _FROM_END.match(hi)
    if not (a and b):
        return None
    return [str(-k) for k in range(int(a.group(1)), int(b.group(1)) - 1, -1)]


def expand_new_positions(spec: str | Sequence[str], order: Sequence[str], where: str
                         ) -> list[str]:
    """Position names for a run that does not exist yet, duplicates dropped (first kept).

    Single names pass through for the caller to validate; ranges of from-the-end positions
    count, other ranges follow ``order`` (the study's columns); ``all`` is ``order``.
    """
    out: list[str] = []
    for item in _as_items(spec, where):
        if not item.is_range:
            names = list(order) if item.lo in ALL else [str(item.lo)]
        else:
            lo, hi = item.lo or order[0], item.hi or order[-1]
            names = from_end_range(lo, hi)
            if names is None:
                names = _resolve([item], list(order), str.strip, where, "the study's positions")
            elif not names:
                raise UserError(where, f"{lo}:{hi} runs backwards", "write e.g. -12:-9")
        out += [n for n in names if n not in out]
    return out


def check_syntax(spec: str | None, where: str, *, layers: bool) -> None:
    """Refuse a malformed selection before any bundle is read: empty items, non-numbers
    among layers, numeric ranges that run backwards."""
    if spec is None:
        return
    for item in parse(spec, where):
        if not layers or (not item.is_range and item.lo in ALL):
            continue
        lo = None if item.lo is None else layer_number(item.lo, where)
        hi = None if item.hi is None else layer_number(item.hi, where)
        if lo is not None and hi is not None and lo > hi:
            raise UserError(where, f"{lo}:{hi} runs backwards", "write LO:HI with LO first")
