"""`probeheat inspect PATH`: a readable summary of a bundle without loading activations."""

from __future__ import annotations

import json

HELP = "summarise a run, grid, generalization, selection or steer bundle (reads metadata only)"


def add_arguments(parser) -> None:
    parser.add_argument("path", help="bundle folder")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    from .probe import add_verify_option

    add_verify_option(parser)


def run(args) -> int:
    from ..bundle import open_bundle
    from ..bundle.summary import summarize

    summary = summarize(open_bundle(args.path))
    if args.json:
        print(json.dumps(summary, indent=1, sort_keys=True))
        return 0
    if summary.get("verdict"):  # a steer bundle: its one-line verdict comes first
        print(summary["verdict"])
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary['kind']} bundle  {args.path}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in summary.items():
        table.add_row(key, value if isinstance(value, str) else json.dumps(value))
    Console().print(table)
    return 0
