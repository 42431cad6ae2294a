"""The `probeheat` command: dispatches to probeheat/commands/<name>.py."""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path

from . import __version__
from .commands import COMMANDS
from .errors import UserError, terminate_as_interrupt


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake on the command line is one line (and the fix: --help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line; ``only`` builds that subcommand's options alone (the others are
    listed by name), so `probeheat inspect` does not import what `run --help` needs."""
    parser = OneLineParser(
        prog="probeheat",
        description="Layer x token probing heatmaps: where does a model know its answer is wrong?",
    )
    parser.add_argument("--version", action="version", version=f"probeheat {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name)
            continue
        try:
            module = importlib.import_module(f"probeheat.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"probeheat.commands.{name}":
                continue  # a command not built yet
            raise
        command = sub.add_parser(name, help=module.HELP, description=module.HELP)
        accept_negative_values(command)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def accept_negative_values(parser: argparse.ArgumentParser) -> None:
    """Read `--positions -8,-1` or `--highlight 4:28,first_answer:-1` as values.

    Python < 3.13 takes a value starting with "-8," for an unknown option. No option of ours
    looks like -N, so anything starting with a minus and a digit is a value (3.13 does this
    itself).
    """
    if hasattr(parser, "_negative_number_matcher"):
        parser._negative_number_matcher = re.compile(r"^-\d[-\w:,.]*$")


def interrupted_line(args) -> str:
    """What an interrupted command says: for a run, where its work is kept and how to go on."""
    out = getattr(args, "out", None)
    if args.command == "run" and out is not None:
        partial = Path(out).with_name(Path(out).name + ".partial")
        if partial.exists():
            return (f"interrupted; the examples answered so far are kept in {partial}: run the "
                    "same command with --resume to continue")
    return "interrupted; nothing was written"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    from .bundle.base import checksums

    try:
        with terminate_as_interrupt(), checksums(not getattr(args, "no_verify", False)):
            return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"probeheat {args.command}: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"probeheat {args.command}: {interrupted_line(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `probeheat inspect ... | head`: the reader left, nothing is wrong
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
