"""`probeheat probe`: one logistic probe per (layer, position) of a run -> a grid bundle."""

from __future__ import annotations

import sys
from pathlib import Path

HELP = "fit a probe per (layer, position) of a run bundle and write the grid of AUCs"


def add_probe_options(p) -> None:
    """Options shared by `probe` and `generalize`."""
    p.add_argument("--layers", help="layers to probe: a range 4:20 (inclusive), 8: or a list "
                                    "0,8,16 (default: every layer of the site)")
    p.add_argument("--positions", help="positions to probe: a comma list, ranges in the run's "
                                       "column order such as first_answer:-1 (default: all)")
    p.add_argument("--C", type=float, default=1.0,
                   help="inverse L2 strength, as in sklearn (default: %(default)s)")
    p.add_argument("--no-standardize", action="store_true",
                   help="fit on raw hidden states (default: standardise with training statistics)")
    p.add_argument("--paper", action="store_true",
                   help="the study's settings: C=1, unscaled features (solved to convergence; "
                        "the study's lbfgs stopped at max_iter=100, often before converging)")
    p.add_argument("--site", default="resid",
                   help="which captured site to probe: resid, mlp, attn or head (one probe per "
                        "layer x attention head; the run needs --sites ...,head) "
                        "(default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="where the solver runs: auto is cuda when torch sees a GPU, else cpu "
                        "(default: %(default)s)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing but errors: no progress, no result table (the grid "
                        "bundle holds it: probeheat inspect)")
    add_verify_option(p)
    from .run import add_log_options

    add_log_options(p)


def add_verify_option(p) -> None:
    p.add_argument("--no-verify", action="store_true",
                   help="skip the SHA-256 check of each bundle file before it is read (for a "
                        "copy you verified already)")


def add_arguments(p) -> None:
    p.add_argument("run", nargs="?", type=Path, help="run bundle")
    p.add_argument("--out", required=True, type=Path, help="grid bundle folder to write")
    p.add_argument("--train", type=Path, help="train probes on this run ...")
    p.add_argument("--test", type=Path, help="... and score them on this run's examples")
    p.add_argument("--seeds", default="0",
                   help="comma list of split seeds, e.g. 0,1,2 (mean and spread; default: 0)")
    p.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of examples held out for testing (default: %(default)s)")
    p.add_argument("--permutations", type=int, default=20,
                   help="refits on permuted training labels at each position's best cell, for "
                        "the null (default: %(default)s)")
    p.add_argument("--correction", default="bh", choices=["bh", "holm"],
                   help="multiple-comparison correction across cells: Benjamini-Hochberg or "
                        "Holm (default: %(default)s)")
    p.add_argument("--exclude-clamped", action="store_true",
                   help="drop examples whose position a rule clamped (exact_answer_after_last "
                        "when the answer ends at the exact answer)")
    p.add_argument("--no-controls", action="store_true",
                   help="skip baselines, the permutation null and the paired tests")
    p.add_argument("--target", default="correct",
                   help="what the probes predict: correct (label 1 = a wrong answer), "
                        "error-type:NAME (one vs rest, from a run made with --samples) or "
                        "error-type (one grid per type of the study, under --out) "
                        "(default: %(default)s)")
    p.add_argument("--position", metavar="P",
                   help="probe this one position (the same as --positions P; with --site head: "
                        "one layer x head grid)")
    p.add_argument("--probe", default="logistic", metavar="FAMILY[,FAMILY]",
                   help="probe family: logistic (the exact L2 solver), mass-mean (difference of "
                        "class means), mass-mean-iid (LDA direction, Ledoit-Wolf ridge) or "
                        "logistic-cv (C by inner 5-fold CV); a comma list writes one grid per "
                        "family under --out (OUT/FAMILY) and compares them cell by cell "
                        "(default: %(default)s)")
    add_probe_options(p)


def parse_seeds(text: str) -> list[int]:
    from ..errors import UserError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError("--seeds", f"cannot read {text!r}", "use a comma list like 0,1,2") from None


def families_of(args) -> list[str]:
    """The --probe families, checked (an unknown name: one line listing the known ones)."""
    from ..errors import UserError
    from ..probe.families import check_family

    names = [n.strip() for n in str(getattr(args, "probe", "logistic")).split(",") if n.strip()]
    if not names:
        raise UserError("--probe", "no probe family given", "pass e.g. --probe logistic")
    if len(set(names)) != len(names):
        raise UserError("--probe", f"a family is named twice in {args.probe!r}",
                        "name each family once")
    return [check_family(n).name for n in names]


def positions_of(args) -> str | None:
    """--positions, or --position P (one position)."""
    from ..errors import UserError

    position = getattr(args, "position", None)
    if position is None:
        return args.positions
    if args.positions is not None:
        raise UserError("--position", "cannot be combined with --positions", "pass one of them")
    if "," in position or ":" in position:
        raise UserError("--position", f"takes one position, got {position!r}",
                        "use --positions for several")
    return position


def settings_of(args, with_split: bool = True):
    """The validated ProbeSettings of the command line (before any bundle is read)."""
    from ..probe.settings import probe_settings
    from ..selection import check_syntax

    check_syntax(args.layers, "--layers", layers=True)
    check_syntax(positions_of(args), "--positions", layers=False)

    split = {"seeds": parse_seeds(args.seeds), "test_fraction": args.test_fraction,
             "permutations": getattr(args, "permutations", 20),
             "correction": getattr(args, "correction", "bh"),
             "exclude_clamped": getattr(args, "exclude_clamped", False),
             "controls": not getattr(args, "no_controls", False),
             "target": getattr(args, "target", "correct")} if with_split else {}
    return probe_settings(C=args.C, standardize=not args.no_standardize,
                          preset="paper" if args.paper else None, site=args.site,
                          device=getattr(args, "device", "auto"),
                          family=families_of(args)[0], **split)


def progress_of(args) -> str:
    return "quiet" if args.quiet else args.log_format


def run(args) -> int:
    from ..distributed import Dist

    try:
        return probe(args)
    finally:
        Dist.from_env().close()  # under torchrun: leave the process group cleanly


def probe(args) -> int:
    from ..errors import UserError

    if (args.train is None) != (args.test is None):
        raise UserError("--train/--test", "pass both or neither", "e.g. --train RUN_A --test RUN_B")
    if args.train is not None and args.run is not None:
        raise UserError(str(args.run), "a RUN argument cannot be combined with --train/--test",
                        "drop it")
    if args.train is None and args.run is None:
        raise UserError("probeheat probe", "no run bundle given", "pass RUN or --train/--test")
    families = families_of(args)
    if len(families) > 1 and args.train is not None:
        raise UserError("--probe", "several families need one RUN, not --train/--test",
                        "pass one family, or probe RUN --probe a,b")
    common = dict(layers=args.layers, positions=positions_of(args), overwrite=args.overwrite,
                  progress=progress_of(args))
    if args.train is not None:
        from ..probe.transfer import make_transfer_grid

        path = make_transfer_grid(args.train, args.test, args.out,
                                  settings=settings_of(args, with_split=False), **common)
    else:
        settings = settings_of(args)
        if len(families) > 1:
            return probe_families(args, settings, families, common)
        if settings.target == "error-type":
            return probe_types(args, settings, common)
        from ..probe.grid import make_grid

        path = make_grid(args.run, args.out, settings=settings, **common)
    if path is not None:  # None: a torchrun rank other than 0
        report(path, args.quiet)
    return 0


def probe_types(args, settings, common: dict) -> int:
    """--target error-type: one grid per error type under --out."""
    from ..probe.grid import make_type_grids

    paths, skipped = make_type_grids(args.run, args.out, settings=settings, **common)
    if not paths and not skipped:
        return 0  # a torchrun rank other than 0
    for path in paths:
        report(path, args.quiet)
    for name, why in skipped.items():
        print(f"error type {name}: no grid ({why})", file=sys.stderr)
    return 0


def probe_families(args, settings, families: list[str], common: dict) -> int:
    """--probe a,b: one grid per family, OUT/FAMILY, then the cell-by-cell comparison."""
    from ..bundle import open_grid
    from ..errors import UserError
    from ..probe.grid import make_family_grids
    from ..probe.report import family_lines, family_rows

    if settings.target == "error-type":
        raise UserError("--probe", "several families and --target error-type would write a "
                        "grid per family and type", "pass one family with --target error-type, "
                        "or one type (--target error-type:NAME)")
    paths = make_family_grids(args.run, args.out, settings=settings, families=families,
                              **common)
    if not paths:
        return 0  # a torchrun rank other than 0
    for path in paths.values():
        report(path, args.quiet)
    if not args.quiet:
        grids = {name: open_grid(path) for name, path in paths.items()}
        print("probe families, cell by cell:", file=sys.stderr)
        for line in family_lines(family_rows(grids, families[0]), families[0]):
            print("  " + line, file=sys.stderr)
    return 0


def report(path: Path, quiet: bool) -> None:
    from ..bundle import open_grid
    from ..probe.report import best_cell_line, comparison, table_lines

    grid = open_grid(path)
    if not quiet:
        target = grid.meta.get("target", "correct")
        what = "" if target == "correct" else f"predicting {grid.meta.get('label')}; "
        family = (grid.meta.get("probe") or {}).get("family", "logistic")
        what += "" if family == "logistic" else f"probe {family}; "
        heads = grid.heads
        shape = (f"{len(grid.layers)} layers x {heads['n_heads']} heads at "
                 f"{len(heads['positions'])} position(s)") if heads else \
            f"{len(grid.layers)} layers x {len(grid.positions)} positions"
        print(f"wrote {path} ({shape}); "
              f"{what}{best_cell_line(grid.grid_values)}", file=sys.stderr)
        for line in table_lines(comparison(grid)):
            print("  " + line, file=sys.stderr)
        absent = (grid.meta.get("baselines") or {}).get("absent") or {}
        if isinstance(absent, str):
            print(f"  baselines absent: {absent}", file=sys.stderr)
        elif absent:
            reasons = sorted(set(absent.values()))
            print(f"  {len(absent)} baselines absent: {'; '.join(reasons)}", file=sys.stderr)
        print(f"view it: probeheat view {path}", file=sys.stderr)
