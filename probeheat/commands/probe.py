"""`probeheat probe`: one logistic probe per (layer, position) of a run -> a grid bundle."""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "fit a probe per (layer, position) of a run bundle and write the grid of AUCs"


def add_probe_options(p) -> None:
    """Options shared by `probe` and `generalize`."""
    p.add_argument("--layers", help="layers to probe: a range 4:20 (inclusive) or a list 0,8,16")
    p.add_argument("--positions", help="comma list of positions to probe (default: all the run has)")
    p.add_argument("--C", type=float, default=1.0, help="inverse L2 strength, as in sklearn (default 1.0)")
    p.add_argument("--no-standardize", action="store_true",
                   help="fit on raw hidden states (default: standardise with training statistics)")
    p.add_argument("--paper", action="store_true",
                   help="the study's settings: C=1, unscaled features (solved to convergence; "
                        "the study's lbfgs stopped at max_iter=100, often before converging)")
    p.add_argument("--site", default="resid", help="which captured site to probe (default resid)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def add_arguments(p) -> None:
    p.add_argument("run", nargs="?", type=Path, help="run bundle")
    p.add_argument("--out", required=True, type=Path, help="grid bundle folder to write")
    p.add_argument("--train", type=Path, help="train probes on this run ...")
    p.add_argument("--test", type=Path, help="... and score them on this run's examples")
    p.add_argument("--seeds", default="0", help="comma list of split seeds, e.g. 0,1,2 (mean and spread)")
    p.add_argument("--test-fraction", type=float, default=0.2)
    add_probe_options(p)


def parse_layers(text: str | None):
    if text is None:
        return None
    try:
        if ":" in text:
            lo, hi = text.split(":")
            return list(range(int(lo), int(hi) + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        from ..errors import UserError

        raise UserError("--layers", f"cannot read {text!r}", "use a range like 4:20 or a list like 0,8,16") from None


def parse_seeds(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        from ..errors import UserError

        raise UserError("--seeds", f"cannot read {text!r}", "use a comma list like 0,1,2") from None


def common(args) -> dict:
    return {
        "layers": parse_layers(args.layers),
        "positions": [p.strip() for p in args.positions.split(",")] if args.positions else None,
        "C": args.C, "standardize": not args.no_standardize,
        "preset": "paper" if args.paper else None, "overwrite": args.overwrite,
        "progress": not args.quiet, "site": args.site,
    }


def run(args) -> int:
    from ..errors import UserError
    from ..grid import make_grid, make_transfer_grid

    if (args.train is None) != (args.test is None):
        raise UserError("--train/--test", "pass both or neither", "e.g. --train RUN_A --test RUN_B")
    if args.train is not None:
        if args.run is not None:
            raise UserError(str(args.run), "a RUN argument cannot be combined with --train/--test",
                            "drop it")
        path = make_transfer_grid(args.train, args.test, args.out, **common(args))
    else:
        if args.run is None:
            raise UserError("probeheat probe", "no run bundle given", "pass RUN or --train/--test")
        path = make_grid(args.run, args.out, seeds=parse_seeds(args.seeds),
                         test_fraction=args.test_fraction, **common(args))
    report(path, args.quiet)
    return 0


def report(path: Path, quiet: bool) -> None:
    from ..bundle import open_grid

    grid = open_grid(path)
    best = grid.best_cell()
    if not quiet:
        where = "no cell could be fitted" if best is None else (
            f"best cell: layer {best[0]}, {best[1]}, AUC {best[2]:.3f}"
            + token_baseline(grid, best[1]))
        print(f"wrote {path} ({len(grid.layers)} layers x {len(grid.positions)} positions); {where}",
              file=sys.stderr)
        print(f"view it: probeheat view {path}", file=sys.stderr)


def token_baseline(grid, position: str) -> str:
    """The same position's AUC at layer 0, the token embedding with no context: what reading
    the token itself gives. A best cell is worth only what it adds to that."""
    if 0 not in grid.layers:
        return ""
    value = grid.metric("auc")[grid.layers.index(0), grid.positions.index(position)]
    return f" (layer 0, the token alone: {value:.3f})"
