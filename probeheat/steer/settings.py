"""What a steering sweep does, validated before any bundle or model is read (pure Python)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError

DEFAULT_ALPHAS = "-8,-4,-2,0,2,4,8"
AT = ("generated", "prompt")
QUESTIONS = ("test", "all")
MAX_ALPHA = 1000.0  # a thousand standard deviations is already far outside any activation
MAX_RANDOM = 100


@dataclass(frozen=True)
class SteerSettings:
    """Every choice of one sweep. ``cell`` None: the grid's best cell."""

    alphas: tuple[float, ...] = (-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0)
    cell: tuple[int, str] | None = None
    n_random: int = 5
    seed: int = 0  # the random directions' generator
    at: str = "generated"
    questions: str = "test"
    limit: int | None = None  # the first N questions of the set (its order in the run)
    batch_size: int | None = None  # None: the run's
    device: str = "auto"
    progress: str = "auto"
    threads: int | None = None  # torch CPU threads (None: torch's choice)

    def __post_init__(self) -> None:
        check_choice("--at", self.at, AT)
        check_choice("--questions", self.questions, QUESTIONS)
        check_count("--random-directions", self.n_random, 1, MAX_RANDOM)
        check_count("--seed", self.seed, 0, 2**32 - 1)
        if self.limit is not None:
            check_count("--limit", self.limit, 1, None)
        if self.batch_size is not None:
            check_count("--batch-size", self.batch_size, 1, None)
        if self.threads is not None:
            check_count("--threads", self.threads, 1, None)
        if 0.0 not in self.alphas or list(self.alphas) != sorted(set(self.alphas)):
            raise ValueError("alphas must be sorted, distinct and include 0 (parse_alphas)")


def check_choice(flag: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(flag, f"unknown value {value!r}", f"use one of {', '.join(choices)}")


def check_count(flag: str, value, low: int, high: int | None) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
    if not ok or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise UserError(flag, f"must be a whole number {span} (got {value!r})",
                        f"pass e.g. {flag} {max(low, 1) if high is None else min(high, 5)}")


def parse_alphas(text: str) -> tuple[tuple[float, ...], bool]:
    """(sorted distinct alphas, whether 0 was added): 0 is the unsteered reference every
    comparison needs, so a list without it gets it (the command says so on stderr)."""
    parts = [p.strip() for p in str(text).split(",")]
    if not any(parts) or not all(parts):
        raise UserError("--alphas", f"{text!r} is not a comma list of numbers",
                        f"pass e.g. --alphas {DEFAULT_ALPHAS}")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise UserError("--alphas", f"{part!r} is not a number",
                            f"pass e.g. --alphas {DEFAULT_ALPHAS}") from None
        if not math.isfinite(value):
            raise UserError("--alphas", f"{part!r} is not a finite number",
                            "pass finite multiples of the direction's standard deviation")
        if abs(value) > MAX_ALPHA:
            raise UserError("--alphas", f"{part} is more than {MAX_ALPHA:g} standard deviations",
                            "pass alphas of a sensible size, e.g. -8..8")
        values.append(value + 0.0)  # -0.0 is 0
    added = 0.0 not in values
    return tuple(sorted(set(values) | {0.0})), added


def parse_cell(text: str | None) -> tuple[int, str] | None:
    """``LAYER:POSITION`` (e.g. ``23:exact_answer_last``, ``0:-1``) or None."""
    if text is None:
        return None
    layer, sep, position = str(text).strip().partition(":")
    layer = layer.strip().removeprefix("L").removeprefix("l")
    if not sep or not position.strip() or not layer.isdigit():
        raise UserError("--cell", f"{text!r} is not LAYER:POSITION",
                        "pass e.g. --cell 23:exact_answer_last")
    return int(layer), position.strip()


def format_alpha(alpha: float) -> str:
    """+4, -2, 0, +0.5: how alphas are shown in reports and figures."""
    text = f"{alpha:+g}"
    return "0" if alpha == 0 else text
