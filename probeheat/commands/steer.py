"""`probeheat steer RUN --grid GRID`: add a probe's direction to the residual stream and
see whether the answers change (a causal test of a probing cell)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "steer along a cell's probe direction (and random controls) and re-grade the answers"

EPILOG = """\
examples:
  probeheat steer runs/demo --grid grids/demo --out steers/demo-best
  probeheat steer runs/demo --grid grids/demo --cell 0:exact_answer_last --out steers/demo-l0
  probeheat steer runs/demo --grid grids/demo --alphas=-16,-8,0,8,16 --at prompt --out s

The direction is the cell's probe weight vector in raw residual units (standardisation
undone), normalised; +alpha moves towards what the probe calls an incorrect answer.
alpha counts standard deviations of the run's activations at the cell along that
direction; random directions are added with the same norm. Layer k is the run's: 0 the
embedding output (input of decoder layer 0), k >= 1 the output of decoder layer k-1.
alpha=0 must reproduce the run's answers token for token, or the command stops (exit 1).
Inspect the result with `probeheat inspect STEER`, draw it with
`probeheat export STEER -o steer.pdf`."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .probe import add_verify_option
    from .run import add_log_options

    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("run", type=Path, help="run bundle (its model is loaded again)")
    p.add_argument("--grid", required=True, type=Path, help="grid bundle probed on RUN")
    p.add_argument("--out", required=True, type=Path, help="steer bundle folder to write")
    p.add_argument("--cell", metavar="LAYER:POSITION",
                   help="the cell whose probe to steer along, e.g. 23:exact_answer_last "
                        "(default: the grid's best cell)")
    p.add_argument("--alphas", default="-8,-4,-2,0,2,4,8",
                   help="comma list of multiples of sigma; 0 is added when missing "
                        "(default: %(default)s)")
    p.add_argument("--random-directions", type=int, default=5, metavar="N",
                   help="random unit directions steered with the same norm, the control "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random directions "
                                                       "(default: %(default)s)")
    p.add_argument("--at", default="generated", choices=["generated", "prompt"],
                   help="add the vector at the prompt's last token and every generated token "
                        "(generated), or at the prompt's last token only (default: %(default)s)")
    p.add_argument("--questions", default="test", choices=["test", "all"],
                   help="answer the grid's test questions (its first split) or every question "
                        "of the run (default: %(default)s)")
    p.add_argument("--limit", type=int, help="only the first N of those questions")
    p.add_argument("--batch-size", type=int, help="rows per batch (default: the run's)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice; "
                                               "1 is steadier on a shared machine)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the model runs (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true",
                   help="no progress and no result table (the bundle holds it: probeheat "
                        "inspect)")
    add_verify_option(p)
    add_log_options(p)


def settings_of(args):
    """Every argument checked before any bundle is read."""
    from ..steer.settings import SteerSettings, parse_alphas, parse_cell

    alphas, added = parse_alphas(args.alphas)
    if added:  # said even with --quiet: the sweep is not quite the one asked for
        print("probeheat steer: --alphas had no 0; added it (the unsteered answers every "
              "alpha is compared with)", file=sys.stderr)
    return SteerSettings(alphas=alphas, cell=parse_cell(args.cell),
                         n_random=args.random_directions, seed=args.seed, at=args.at,
                         questions=args.questions, limit=args.limit,
                         batch_size=args.batch_size, device=args.device, threads=args.threads,
                         progress="quiet" if args.quiet else args.log_format)


def run(args) -> int:
    from ..bundle import open_steer
    from ..steer.sweep import steer

    settings = settings_of(args)
    path = steer(args.run, args.grid, args.out, settings, overwrite=args.overwrite)
    bundle = open_steer(path)
    print(bundle.verdict)
    if not args.quiet:
        print(f"wrote {path}; draw it: probeheat export {path} -o steer.pdf", file=sys.stderr)
    return 0
