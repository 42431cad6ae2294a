"""`make demo-errors`: resampling, error types and answer selection on the built-in model.

1. run: smollm2-135m-instruct answers world-facts greedily and samples K more answers per
   question (temperature 1, top-k 50: the study's sampling), graded and typed;
2. probe: the error-detection grid (target correct) and one grid per error type;
3. select: the probe of the grid's best sampled cell chooses among each test question's
   samples, against greedy, random and majority vote;
then print the type distribution, each type grid's best cell and the selection table.
Safe to call again: a finished run is reused.

    python -m probeheat.demo_errors [--limit 200] [--samples 10] [--root artifacts]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

from .demo import MODEL, timed

DEFAULT_LIMIT = 200
DEFAULT_SAMPLES = 10


def paths(root: Path, limit: int, k: int) -> dict[str, Path]:
    name = f"world-facts-{MODEL}-{limit}-samples{k}"
    return {"run": root / "runs" / name, "grid": root / "grids" / name,
            "types": root / "grids" / f"{name}-types", "selection": root / "selections" / name}


def demo_errors(limit: int = DEFAULT_LIMIT, k: int = DEFAULT_SAMPLES,
                root: Path = Path("artifacts"), *, quiet: bool = False,
                max_new_tokens: int = 32) -> dict[str, Path]:
    from .probe.grid import make_grid, make_type_grids
    from .probe.select import make_selection
    from .probe.settings import probe_settings
    from .run.config import RunConfig
    from .run.pipeline import run

    out, timings = paths(root, limit, k), {}
    argv = ["python", "-m", "probeheat.demo_errors", "--limit", str(limit), "--samples", str(k)]
    with timed(timings, "run"):
        run(RunConfig(out=out["run"], model=MODEL, limit=limit, seed=0, batch_size=16,
                      max_new_tokens=max_new_tokens, samples=k, baselines=False, resume=True,
                      quiet=quiet), argv=argv)
    progress = "quiet" if quiet else True
    with timed(timings, "probe"):
        make_grid(out["run"], out["grid"], overwrite=True, progress=progress, controls=False)
        _, skipped = make_type_grids(out["run"], out["types"], overwrite=True,
                                     progress=progress,
                                     settings=probe_settings(target="error-type",
                                                             controls=False))
    with timed(timings, "select"):
        make_selection(out["run"], out["grid"], out["selection"], overwrite=True)
    summarize(out, skipped, timings)
    return out


def type_lines(run) -> list[str]:
    from .data.error_types import PAPER_TYPES, has_type

    records = run.records()
    counts = Counter()
    for r in records:
        for name in PAPER_TYPES:
            counts[name] += has_type(r["error_type"]["types"], name)
    n = len(records)
    return [f"  {name:<22} {counts[name]:>4} of {n}  ({counts[name] / n:.0%})"
            for name in PAPER_TYPES]


def grid_lines(types_dir: Path, skipped: dict[str, str]) -> list[str]:
    from .bundle import open_grid

    lines = []
    for path in sorted(p for p in types_dir.iterdir() if (p / "manifest.json").exists()):
        best = open_grid(path).grid_values.best_cell("auc")
        lo, hi = open_grid(path).grid_values.intervals["auc"]
        lines.append(f"  {path.name:<22} best L{best.layer} {best.position}: AUC "
                     f"{best.value:.3f} [{lo[best.row, best.col]:.3f}, "
                     f"{hi[best.row, best.col]:.3f}]")
    lines += [f"  {name:<22} no grid: {why}" for name, why in skipped.items()]
    return lines


def summarize(out: dict[str, Path], skipped: dict[str, str], timings: dict) -> None:
    from .bundle import open_run, open_selection
    from .probe.select import table_lines

    run, sel = open_run(out["run"]), open_selection(out["selection"])
    cell = sel.meta["cell"]
    lines = [f"error types over {run.samples['k']} samples per question (a question may have "
             "several or none):", *type_lines(run),
             "probes for each type (one vs rest, on the greedy answer's states):",
             *grid_lines(out["types"], skipped),
             f"answer selection on {sel.n_questions} test questions, probe at L{cell['layer']} "
             f"{cell['position']} (test AUC {cell['test_auc']:.3f}):",
             *("  " + line for line in table_lines(sel.table)),
             "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()),
             f"bundles: {out['run']}, {out['grid']}, {out['types']}/, {out['selection']}"]
    print("\n".join(lines), file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m probeheat.demo_errors",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                        help="questions (default: %(default)s)")
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                        help="sampled answers per question (default: %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("artifacts"),
                        help="where the bundles go (default: %(default)s)")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    from .errors import UserError

    try:
        demo_errors(args.limit, args.samples, args.root, quiet=args.quiet)
    except UserError as exc:
        print(f"probeheat demo-errors: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
