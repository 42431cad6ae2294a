"""`probeheat select`: choose among a question's sampled answers by the probe's score."""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "choose among sampled answers by probe, against greedy, random and majority vote"


def add_arguments(p) -> None:
    p.add_argument("run", type=Path, help="run bundle made with --samples K")
    p.add_argument("--grid", required=True, type=Path,
                   help="grid bundle probed on this run (target correct)")
    p.add_argument("--cell", metavar="LAYER:POSITION",
                   help="the probe's cell (default: the grid's best cell among those the "
                        "samples were captured at)")
    p.add_argument("--out", required=True, type=Path, help="selection bundle folder to write")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random baseline and the bootstrap (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    from .probe import add_verify_option

    add_verify_option(p)


def run(args) -> int:
    from ..bundle import open_selection
    from ..probe.select import make_selection, parse_cell, table_lines

    if args.cell is not None:
        parse_cell(args.cell)  # a malformed cell is refused before any bundle is read
    path = make_selection(args.run, args.grid, args.out, cell=args.cell, seed=args.seed,
                          overwrite=args.overwrite)
    if not args.quiet:
        sel = open_selection(path)
        cell = sel.meta["cell"]
        q = sel.meta["questions"]
        print(f"wrote {path}: {q['n']} test questions x {sel.meta['samples']['k']} samples; "
              f"probe at L{cell['layer']} {cell['position']} ({cell['chosen']})",
              file=sys.stderr)
        for line in table_lines(sel.table):
            print("  " + line, file=sys.stderr)
        if sel.meta.get("caution"):
            print(f"  caution: {sel.meta['caution']}", file=sys.stderr)
        if q.get("no_scorable_sample"):
            print(f"  {q['no_scorable_sample']} questions had no sample with that position "
                  "(the probe took sample 0 there)", file=sys.stderr)
    return 0
