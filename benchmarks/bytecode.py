"""Compile probeheat's bytecode before a start-up benchmark times anything.

A wheel install compiles every module at install time, and an editable install writes
``__pycache__`` on its first run, so a user's second start reads bytecode. Where
``PYTHONDONTWRITEBYTECODE`` is set (some containers set it), nothing is ever cached and
every start would compile probeheat's sources from scratch, while the baselines' packages
(numpy, Textual) were compiled by pip: the ratio would time the compiler, not probeheat.
"""

from __future__ import annotations

import compileall
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def compile_project() -> None:
    """Write the bytecode of probeheat/ and tui/ (what `pip install` would have written)."""
    for package in ("probeheat", "tui"):
        if not compileall.compile_dir(ROOT / package, quiet=1):
            raise SystemExit(f"{ROOT / package}: a module does not compile")
