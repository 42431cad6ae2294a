"""Errors a user can cause. The CLI prints them as one line and exits non-zero."""

from __future__ import annotations

import contextlib
import signal


class UserError(Exception):
    """A problem with the user's input: printed as one line, never as a traceback.

    The message names the file (or argument), the problem and the fix:
    ``"data.jsonl: no 'question' column; pass --question-column NAME"``.
    """

    exit_code = 2

    def __init__(self, where: str | None, problem: str, fix: str | None = None):
        self.where = where
        self.problem = problem
        self.fix = fix
        super().__init__(self.line())

    def line(self) -> str:
        text = f"{self.where}: {self.problem}" if self.where else self.problem
        return f"{text} ({self.fix})" if self.fix else text


def did_you_mean(name: str, known) -> str:
    """"did you mean 'X'? " for the known name nearest ``name`` (case aside), or "": the
    start of a fix for a mistyped name."""
    import difflib

    near = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
    return f"did you mean {near[0]!r}? " if near else ""


@contextlib.contextmanager
def terminate_as_interrupt():
    """SIGTERM (kill, a batch scheduler's stop) raises KeyboardInterrupt, as Ctrl-C does, so
    long commands stop the same way and say where their work is kept."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding application): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
