"""One progress reporter for every long step (run, probe, generalize, controls).

Modes:
- ``bar``: a rich live bar (count, rate, ETA, running accuracy); the default on a terminal;
- ``text``: a plain line every ``interval`` seconds and at each checkpoint (a shard written,
  a layer done), for output that is piped, redirected or logged (nohup, tmux logging, batch
  schedulers), where a live bar prints nothing until the end;
- ``json``: the same as JSON lines (``{"event": "progress", ...}``), for scripts;
- ``quiet``: nothing.
``auto`` picks ``bar`` when the stream is a terminal, else ``text``.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

MODES = ("auto", "bar", "text", "json", "quiet")
DEFAULT_INTERVAL = 30.0


@dataclass
class Totals:
    """What the work so far adds up to: this session and, for a resumed run, before it."""

    done: int = 0
    correct: int = 0
    tokens: int = 0
    done_before: int = 0
    correct_before: int = 0

    @property
    def accuracy(self) -> float | None:
        n = self.done + self.done_before
        return (self.correct + self.correct_before) / n if n else None


@dataclass
class Progress:
    """``with Progress("run", total) as p: p.advance(n, correct=k)``; see the module doc."""

    label: str
    total: int
    unit: str = "examples"
    mode: str = "auto"
    interval: float = DEFAULT_INTERVAL
    stream: TextIO | None = None
    totals: Totals = field(default_factory=Totals)
    show_accuracy: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {self.mode!r}")
        self.stream = self.stream or sys.stderr
        if self.mode == "auto":
            self.mode = "bar" if _is_terminal(self.stream) else "text"
        self._bar = None
        self._started = self._last = time.monotonic()

    def __enter__(self) -> Progress:
        self._started = self._last = time.monotonic()
        if self.mode == "bar":
            self._start_bar()
        elif self.mode in ("text", "json"):
            self._emit("start")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._bar is not None:
            self._bar.stop()
        if self.mode in ("text", "json") and exc_type is None:
            self._emit("done")

    # -- updates --------------------------------------------------------------------------

    def advance(self, n: int = 0, *, correct: int = 0, tokens: int = 0) -> None:
        """Count ``n`` finished items (and their correct answers and generated tokens)."""
        self.totals.done += n
        self.totals.correct += correct
        self.totals.tokens += tokens
        if self._bar is not None:
            self._bar.update(self._task, completed=self.totals.done, info=self._info())
        elif self.mode in ("text", "json") and time.monotonic() - self._last >= self.interval:
            self._emit("progress")

    def checkpoint(self, what: str) -> None:
        """A milestone (a shard written, a layer fitted): logged at once in text/json modes."""
        if self.mode in ("text", "json"):
            self._emit("progress", what)

    # -- rendering ------------------------------------------------------------------------

    def _elapsed(self) -> float:
        return max(time.monotonic() - self._started, 1e-9)

    def _rate(self) -> float:
        return self.totals.done / self._elapsed()

    def _eta(self) -> float | None:
        rate = self._rate()
        left = self.total - self.totals.done
        return left / rate if rate > 0 and left >= 0 else None

    def _info(self) -> str:
        parts = [f"{self._rate():.2f} {self.unit}/s"]
        if self.totals.tokens:
            parts.append(f"{self.totals.tokens / self._elapsed():.0f} tok/s")
        if self.show_accuracy and self.totals.accuracy is not None:
            parts.append(f"acc {self.totals.accuracy:.1%}")
        if self.totals.done_before:
            parts.append(f"(+{self.totals.done_before} resumed)")
        return "  ".join(parts)

    def fields(self) -> dict:
        t = self.totals
        out = {"label": self.label, "done": t.done, "total": self.total, "unit": self.unit,
               "elapsed_s": round(self._elapsed(), 1), "rate": round(self._rate(), 3)}
        eta = self._eta()
        out["eta_s"] = None if eta is None else round(eta, 1)
        if t.tokens:
            out["tokens_per_s"] = round(t.tokens / self._elapsed(), 1)
        if self.show_accuracy:
            out["accuracy"] = None if t.accuracy is None else round(t.accuracy, 4)
        if t.done_before:
            out["done_before"] = t.done_before
        return out

    def _emit(self, event: str, what: str | None = None) -> None:
        self._last = time.monotonic()
        data = self.fields()
        if what:
            data["note"] = what
        if self.mode == "json":
            line = json.dumps({"event": event, **data}, sort_keys=True)
        else:
            eta = data["eta_s"]
            line = (f"[{self.label}] {data['done']}/{self.total} {self.unit}  {self._info()}"
                    + (f"  eta {_clock(eta)}" if eta is not None and event != "done" else "")
                    + (f"  elapsed {_clock(data['elapsed_s'])}" if event == "done" else "")
                    + (f"  {what}" if what else ""))
        print(line, file=self.stream, flush=True)

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self._bar = RichProgress(
            TextColumn(f"[bold]{self.label}[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"), TimeRemainingColumn(),
            console=Console(file=self.stream), transient=False)
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=self.total, info=self._info())


def counted(n: int, noun: str) -> str:
    """"1 example", "2 examples": a count with its noun (plural with an s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
