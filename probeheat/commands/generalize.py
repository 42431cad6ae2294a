"""`probeheat generalize`: the train x test AUC matrix over several runs (as in the study)."""

from __future__ import annotations

import sys
from pathlib import Path

from .probe import add_probe_options, progress_of, settings_of

HELP = "probe several runs and write the train x test AUC matrix at each training run's best cell"


def add_arguments(p) -> None:
    p.add_argument("runs", nargs="+", type=Path, help="two or more run bundles (same model)")
    p.add_argument("--out", required=True, type=Path, help="generalization bundle folder to write")
    p.add_argument("--seeds", default="0", help="comma list of split seeds (default: 0)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of examples held out for testing (default: %(default)s)")
    add_probe_options(p)


def run(args) -> int:
    from ..bundle import open_bundle
    from ..errors import UserError
    from ..probe.generalize import generalize

    if len(args.runs) < 2:
        raise UserError(None, "needs at least two runs", "pass RUN_A RUN_B ...")
    path = generalize(args.runs, args.out, layers=args.layers, positions=args.positions,
                      settings=settings_of(args), overwrite=args.overwrite,
                      progress=progress_of(args))
    if path is None:  # a torchrun rank other than 0
        return 0
    bundle = open_bundle(path)
    if not args.quiet:
        print(f"wrote {path}: {len(bundle.train_names)} x {len(bundle.test_names)} matrix; "
              f"export it: probeheat export {path} -o generalization.pdf", file=sys.stderr)
    return 0
