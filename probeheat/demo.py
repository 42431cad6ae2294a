"""`make demo`: the whole job offline on the built-in model and dataset.

1. run: smollm2-135m-instruct answers world-facts (greedy), with the study's baselines;
2. probe: the grid of AUCs with its baselines, permutation null and paired tests;
3. the same answers again under the symmetric exact-answer policy (``--answers-from``, no
   generation: one re-forward), probed the same way, to show how much of the exact-answer
   columns is the span choice rather than the model;
4. export: PNG + PDF of the main grid with its baseline strip;
then print the comparison table, the two policies side by side, where everything is and the
command that opens the viewer. Safe to call again: finished runs are reused
(``--resume``), an unfinished one continues.

    python -m probeheat.demo [--limit 600] [--root artifacts]
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

DEFAULT_LIMIT = 600
MODEL = "smollm2-135m-instruct"
DATASET = "world-facts"
EXACT = ("exact_answer_before_first", "exact_answer_first", "exact_answer_last",
         "exact_answer_after_last")


def paths(root: Path, limit: int, model: str = MODEL) -> dict[str, Path]:
    name = f"{DATASET}-{model}-{limit}"
    return {
        "run": root / "runs" / name,
        "grid": root / "grids" / name,
        "sym_run": root / "runs" / f"{name}-symmetric",
        "sym_grid": root / "grids" / f"{name}-symmetric",
        "png": root / "figures" / f"{name}.png",
        "pdf": root / "figures" / f"{name}.pdf",
    }


def demo(limit: int = DEFAULT_LIMIT, root: Path = Path("artifacts"), *, quiet: bool = False,
         batch_size: int = 32, max_new_tokens: int = 48, model: str = MODEL) -> dict[str, Path]:
    from .bundle import open_grid, verify_bundle
    from .probe.grid import make_grid
    from .run.config import RunConfig
    from .run.pipeline import run

    out, timings = paths(root, limit, model), {}
    common = dict(model=model, dataset=DATASET, limit=limit, seed=0, batch_size=batch_size,
                  max_new_tokens=max_new_tokens, resume=True, quiet=quiet)
    argv = ["python", "-m", "probeheat.demo", "--limit", str(limit), "--model", model]
    with timed(timings, "run"):
        run(RunConfig(out=out["run"], **common), argv=argv)
    with timed(timings, "probe"):
        make_grid(out["run"], out["grid"], overwrite=True, progress=not quiet)
    with timed(timings, "symmetric"):
        run(RunConfig(out=out["sym_run"], exact_answer="symmetric", answers_from=out["run"],
                      baselines=False, **common), argv=argv)
        make_grid(out["sym_run"], out["sym_grid"], overwrite=True, progress=not quiet)
    with timed(timings, "export"):
        export(open_grid(out["grid"]), out, limit, model)
    problems = [p for key in ("run", "grid", "sym_run", "sym_grid")
                for p in verify_bundle(out[key])]
    if problems:
        raise SystemExit("demo bundles failed verification:\n" + "\n".join(problems))
    summarize(out, timings)
    return out


class timed:
    def __init__(self, timings: dict, key: str):
        self.timings, self.key = timings, key

    def __enter__(self):
        self.started = time.perf_counter()

    def __exit__(self, *exc):
        self.timings[self.key] = time.perf_counter() - self.started


def export(grid, out: dict[str, Path], limit: int, model: str = MODEL) -> None:
    from .figures import export_grid

    out["png"].parent.mkdir(parents=True, exist_ok=True)
    for key in ("png", "pdf"):
        export_grid(grid, out[key], mark_best=True, baselines=True, width="double",
                    title=f"{model} on {DATASET} (n={limit})")


def policy_rows(grid) -> dict[str, tuple[float, float, int]]:
    """Per exact-answer position: (layer-0 AUC, best AUC, best layer)."""
    import numpy as np

    values = grid.grid_values
    auc = values.metric("auc")
    out = {}
    for position in EXACT:
        if position not in values.positions:
            continue
        col = auc[:, values.positions.index(position)]
        if not np.isfinite(col).any():
            continue
        layer0 = col[values.layers.index(0)] if 0 in values.layers else math.nan
        best = int(np.nanargmax(col))
        out[position] = (float(layer0), float(col[best]), values.layers[best])
    return out


def policy_lines(study, symmetric) -> list[str]:
    a, b = policy_rows(study), policy_rows(symmetric)
    lines = ["exact-answer policy (same answers)     study: L0 / best        symmetric: L0 / best"]
    for position in EXACT:
        if position in a and position in b:
            (a0, ab, al), (b0, bb, bl) = a[position], b[position]
            lines.append(f"  {position:28s}  {a0:.3f} / {ab:.3f} (L{al:<2})   "
                         f"{b0:.3f} / {bb:.3f} (L{bl})")
    return lines


def summarize(out: dict[str, Path], timings: dict[str, float]) -> None:
    from .bundle import open_grid, open_run
    from .probe.report import best_cell_line, comparison, table_lines

    run, grid, sym = open_run(out["run"]), open_grid(out["grid"]), open_grid(out["sym_grid"])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = [
        "",
        f"run    {out['run']}  ({run.n_examples} questions, accuracy "
        f"{run.meta['n_correct'] / run.n_examples:.1%})",
        f"grid   {out['grid']}  ({best_cell_line(grid.grid_values)})",
        "", *table_lines(comparison(grid)), "",
        *policy_lines(grid, sym), "",
        f"figure {out['png']}",
        f"figure {out['pdf']}",
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; peak memory {peak_gb:.2f} GB",
        "",
        f"open the heatmap:  .venv/bin/probeheat view {out['grid']}",
        f"compare policies:  .venv/bin/probeheat view {out['grid']} {out['sym_grid']}  (d)",
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    from .errors import UserError, terminate_as_interrupt

    parser = argparse.ArgumentParser(prog="python -m probeheat.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="questions (default %(default)s)")
    parser.add_argument("--model", default=MODEL,
                        help="a built-in model, e.g. gemma3-270m after `make gemma` "
                             "(default %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("artifacts"), help="where bundles and figures go")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            demo(args.limit, args.root, quiet=args.quiet, model=args.model)
    except UserError as exc:
        print(f"probeheat demo: {exc.line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("probeheat demo: interrupted; run it again to continue (a started run resumes)",
              file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
