"""`make demo-steer`: `probeheat steer` on the built-in model's demo grid.

Two sweeps on the run and grid of `make demo` (made first when they are missing):
1. the grid's best cell (for the demo, layer 23 ``exact_answer_last``);
2. a control cell: the same position at layer 0, the token embedding with no context
   (the grid's token-identity reference), whose probe reads which token it is, not what
   the model knows (when layer 0 was not fitted there: the lowest-AUC fitted cell of the
   best cell's layer).
Each answers the first ``--questions`` test questions of the grid's split again at every
alpha, along the probe's direction and 5 seeded random ones, then prints the verdict and
the table. Sized for 2 CPU cores in under 10 minutes (6.5 measured): two torch threads, 30 questions,
alphas -8, -4, 0, 4, 8.

    python -m probeheat.steer.demo [--questions 30] [--alphas=-8,-4,0,4,8] [--root artifacts]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

DEFAULT_ALPHAS = "-8,-4,0,4,8"


def control_cell(grid, best: tuple[int, str]) -> tuple[int, str]:
    """Layer 0 at the best cell's position, else the weakest fitted cell of its layer."""
    import numpy as np

    layer, position = best
    auc = grid.metric("auc")
    if 0 in grid.layers and layer != 0 and \
            np.isfinite(auc[grid.layers.index(0), grid.positions.index(position)]):
        return 0, position
    row = auc[grid.layers.index(layer)]
    fitted = [j for j in np.argsort(row) if np.isfinite(row[j]) and grid.positions[j] != position]
    if not fitted:
        raise SystemExit(f"{grid.path}: no second fitted cell to use as a control")
    return layer, grid.positions[int(fitted[0])]


def demo_steer(root: Path = Path("artifacts"), limit: int = 600, *, questions: int = 30,
               alphas: str = DEFAULT_ALPHAS, threads: int = 2, quiet: bool = False) -> list:
    """Run both sweeps; returns their bundle paths."""
    from .. import demo
    from ..bundle import open_grid
    from .settings import SteerSettings, parse_alphas
    from .sweep import steer

    paths = demo.paths(root, limit)
    if not (paths["run"] / "manifest.json").exists() or \
            not (paths["grid"] / "manifest.json").exists():
        demo.demo(limit, root, quiet=quiet)
    grid = open_grid(paths["grid"])
    best = grid.best_cell()[:2]
    cells = {"best": best, "control": control_cell(grid, best)}
    out, timings = [], {}
    for name, (layer, position) in cells.items():
        settings = SteerSettings(alphas=parse_alphas(alphas)[0], cell=(layer, position),
                                 n_random=5, limit=questions, threads=threads,
                                 progress="quiet" if quiet else "auto")
        target = root / "steers" / f"{paths['grid'].name}-{name}-L{layer}-{position}"
        started = time.perf_counter()
        out.append(steer(paths["run"], paths["grid"], target, settings, overwrite=True))
        timings[name] = time.perf_counter() - started
    summarize(out, timings)
    return out


def table_lines(bundle) -> list[str]:
    """Per alpha: the probe direction's accuracy and interval, the random band, the share
    of changed answers and the KL (probe / random mean)."""
    table = bundle.table()
    acc, lo, hi = table["accuracy"], table["accuracy_lo"], table["accuracy_hi"]
    lines = ["  alpha   probe acc [95% CI]    random min-max   changed probe/random   "
             "KL probe/random"]
    for k, alpha in enumerate(bundle.alphas):
        lines.append(
            f"  {alpha:+5g}   {acc[k, 0]:.3f} [{lo[k, 0]:.3f}, {hi[k, 0]:.3f}]   "
            f"{acc[k, 1:].min():.3f}-{acc[k, 1:].max():.3f}      "
            f"{table['changed'][k, 0]:5.0%} / {table['changed'][k, 1:].mean():4.0%}        "
            f"{table['kl'][k, 0]:.3f} / {table['kl'][k, 1:].mean():.3f}")
    return lines


def summarize(paths: list, timings: dict) -> None:
    from ..bundle import open_steer

    lines = [""]
    for path, (name, seconds) in zip(paths, timings.items(), strict=True):
        bundle = open_steer(path)
        lines += [f"{name}: {path}  ({bundle.n_questions} questions, {seconds:.0f} s)",
                  "  " + bundle.verdict, *table_lines(bundle), ""]
    lines.append(f"draw one: .venv/bin/probeheat export {paths[0]} -o steer.pdf")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    from ..errors import UserError

    parser = argparse.ArgumentParser(prog="python -m probeheat.steer.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=Path("artifacts"))
    parser.add_argument("--limit", type=int, default=600, help="the demo run's questions")
    parser.add_argument("--questions", type=int, default=30, help="test questions steered")
    parser.add_argument("--alphas", default=DEFAULT_ALPHAS)
    parser.add_argument("--threads", type=int, default=2,
                        help="torch threads (default %(default)s; 1 is steadier on a busy machine)")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        demo_steer(args.root, args.limit, questions=args.questions, alphas=args.alphas,
                   threads=args.threads, quiet=args.quiet)
    except UserError as exc:
        print(f"probeheat demo-steer: {exc.line()}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
