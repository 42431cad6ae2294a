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
        table.add_row(key, shown(value))
    Console().print(table)
    return 0


def shown(value, depth: int = 0) -> str:
    """A summary value for the table: an object as one "key: value" line per key, nested
    objects as "key value · key value" (in parentheses one level further down), lists of
    numbers and names as they read; --json has the raw values."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        if depth == 0:
            return "\n".join(f"{k}: {shown(v, 1)}" for k, v in value.items())
        if value and all(isinstance(v, str) for v in value.values()):  # name: reason
            names: dict[str, list[str]] = {}
            for k, v in value.items():
                names.setdefault(v, []).append(k)
            return "; ".join(f"{', '.join(ks)}: {v}" for v, ks in names.items())
        inner = " · ".join(f"{k} {shown(v, depth + 1)}" for k, v in value.items())
        return f"({inner})" if depth > 1 else inner
    if isinstance(value, list):
        items = ", ".join(shown(v, depth + 1) for v in value)
        return items if depth == 0 else f"[{items}]"
    return json.dumps(value)
