"""`make demo`: the whole job offline on the built-in model and dataset.

run (smollm2-135m-instruct answers world-facts) -> probe (grid of AUCs) -> export (PNG + PDF),
then print where everything is and the command that opens the viewer. Safe to call again:
a finished run is reused (``--resume``), an unfinished one continues.

    python -m probeheat.demo [--limit 600] [--root artifacts]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

DEFAULT_LIMIT = 600
MODEL = "smollm2-135m-instruct"
DATASET = "world-facts"


def paths(root: Path, limit: int) -> dict[str, Path]:
    name = f"{DATASET}-{MODEL}-{limit}"
    return {
        "run": root / "runs" / name,
        "grid": root / "grids" / name,
        "png": root / "figures" / f"{name}.png",
        "pdf": root / "figures" / f"{name}.pdf",
    }


def demo(limit: int = DEFAULT_LIMIT, root: Path = Path("artifacts"), *, quiet: bool = False,
         batch_size: int = 32, max_new_tokens: int = 48) -> dict[str, Path]:
    from .bundle import open_grid, verify_bundle
    from .figures import export_grid
    from .probe.grid import make_grid
    from .run.config import RunConfig
    from .run.pipeline import run

    out = paths(root, limit)
    timings = {}
    started = time.perf_counter()
    run(RunConfig(out=out["run"], model=MODEL, dataset=DATASET, limit=limit, seed=0,
                  batch_size=batch_size, max_new_tokens=max_new_tokens, resume=True, quiet=quiet),
        argv=["python", "-m", "probeheat.demo", "--limit", str(limit)])
    timings["run"] = time.perf_counter() - started
    started = time.perf_counter()
    make_grid(out["run"], out["grid"], overwrite=True, progress=not quiet)
    timings["probe"] = time.perf_counter() - started
    started = time.perf_counter()
    grid = open_grid(out["grid"])
    out["png"].parent.mkdir(parents=True, exist_ok=True)
    for key in ("png", "pdf"):
        export_grid(grid, out[key], mark_best=True, title=f"{MODEL} on {DATASET} (n={limit})")
    timings["export"] = time.perf_counter() - started
    problems = verify_bundle(out["run"]) + verify_bundle(out["grid"])
    if problems:
        raise SystemExit("demo bundles failed verification:\n" + "\n".join(problems))
    summarize(out, grid, timings)
    return out


def summarize(out: dict[str, Path], grid, timings: dict[str, float]) -> None:
    import numpy as np

    from .bundle import open_run
    from .probe.report import best_cell_line

    run = open_run(out["run"])
    auc = grid.metric("auc")
    column = {p: float(np.nanmax(auc[:, j])) for j, p in enumerate(grid.positions)}
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = [
        "",
        f"run    {out['run']}  ({run.n_examples} questions, accuracy "
        f"{run.meta['n_correct'] / run.n_examples:.1%})",
        f"grid   {out['grid']}  ({best_cell_line(grid.grid_values)})",
        f"figure {out['png']}",
        f"figure {out['pdf']}",
        "best AUC per position: " + ", ".join(f"{p} {v:.2f}" for p, v in column.items()),
        "time: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
        + f"; peak memory {peak_gb:.2f} GB",
        "",
        f"open the heatmap:  .venv/bin/probeheat view {out['grid']}",
    ]
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    from .errors import UserError, terminate_as_interrupt

    parser = argparse.ArgumentParser(prog="python -m probeheat.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help="questions (default %(default)s)")
    parser.add_argument("--root", type=Path, default=Path("artifacts"), help="where bundles and figures go")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            demo(args.limit, args.root, quiet=args.quiet)
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
