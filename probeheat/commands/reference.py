"""README's option reference, written from the parsers themselves.

``python -m probeheat.commands.reference`` prints one block per command (its options, in
the order ``--help`` lists them); ``--write README.md`` replaces the text between the
``<!-- options:begin -->`` and ``<!-- options:end -->`` markers with it. The test suite
compares README with this output, so help and README cannot drift apart.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"


def command_options(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """Each subcommand's options (long names, with a short alias after a slash), in order."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    out: dict[str, list[str]] = {}
    for name, command in sub.choices.items():
        names = []
        for action in command._actions:
            if not action.option_strings or "--help" in action.option_strings:
                continue
            longs = [s for s in action.option_strings if s.startswith("--")]
            shorts = [s for s in action.option_strings if not s.startswith("--")]
            names.append("/".join(longs[:1] + shorts))
        out[name] = names
    return out


def reference_block() -> str:
    """The Markdown between the markers: one line per command."""
    from ..cli import build_parser

    lines = [BEGIN, "| command | options (`probeheat COMMAND --help` gives each one's meaning, "
             "default and choices) |", "|---|---|"]
    for name, options in command_options(build_parser()).items():
        listed = ", ".join(f"`{o}`" for o in options) or "(none)"
        lines.append(f"| `{name}` | {listed} |")
    lines.append(END)
    return "\n".join(lines)


def readme_block(text: str) -> str | None:
    """The reference block README holds now (None: the markers are missing)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        return None
    return text[start:end + len(END)]


def write(readme: Path) -> None:
    text = readme.read_text(encoding="utf-8")
    old = readme_block(text)
    if old is None:
        raise SystemExit(f"{readme}: no {BEGIN} ... {END} markers; add them where the "
                         "reference belongs")
    readme.write_text(text.replace(old, reference_block()), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--write"] and len(argv) == 2:
        write(Path(argv[1]))
        return 0
    print(reference_block())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
