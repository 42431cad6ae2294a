"""How long `probeheat export` takes for one 32 x 15 figure, start to finish.

Each measurement is a fresh `python` process (interpreter start, imports, reading the grid,
drawing, writing), because that is what a user waits for at the shell. Baselines measured in
the same run:

* import floor: `python -c "import matplotlib.pyplot"`: no figure at all, just the cost of
  starting Python and importing matplotlib;
* naive: a plain script that opens the same grid and calls `plt.imshow` + `plt.colorbar` +
  default `plt.savefig` (raster cells in the PDF, Type 3 fonts, no determinism settings).

Usage: python benchmarks/export_speed.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_S = 2.0
POSITIONS = ["last_q", "first_answer", "second_answer", "exact_answer_before_first",
             "exact_answer_first", "exact_answer_last", "exact_answer_after_last",
             *(str(-k) for k in range(8, 0, -1))]

NAIVE = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from probeheat.bundle import open_grid
grid = open_grid(sys.argv[1])
plt.imshow(grid.metric("auc"), cmap="Blues", vmin=0.5, vmax=1.0, aspect="auto")
plt.colorbar(label="AUC")
plt.xticks(range(len(grid.positions)), grid.positions, rotation=90)
plt.savefig(sys.argv[2])
"""


def make_grid(folder: Path) -> Path:
    from probeheat.bundle import write_grid

    rng = np.random.default_rng(0)
    auc = 0.5 + 0.4 * rng.random((32, len(POSITIONS)))
    auc[rng.random(auc.shape) < 0.03] = np.nan
    meta = {"layers": list(range(32)), "positions": POSITIONS, "metrics": ["auc"]}
    return write_grid(folder / "grid", meta, {"auc": auc})


def timed(cmd: list[str], repeats: int) -> tuple[float, float]:
    """Median wall time and median CPU time (user + sys) of `cmd` in fresh processes, after
    one untimed warm-up for the disk cache. CPU time is reported too because wall time on a
    shared machine includes waiting for a core."""
    subprocess.run(cmd, check=True, capture_output=True)
    walls, cpus = [], []
    for _ in range(repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grid = str(make_grid(folder))
        floor = timed([py, "-c", "import matplotlib.pyplot"], args.repeats)
        rows = []
        for ext in ("pdf", "png"):
            out = str(folder / f"fig.{ext}")
            ours = timed([py, "-m", "probeheat.cli", "export", grid, "-o", out], args.repeats)
            naive = timed([py, "-c", NAIVE, grid, str(folder / f"naive.{ext}")], args.repeats)
            rows.append((ext, ours, naive))
    load = os.getloadavg()[0]
    print(f"32 layers x 15 positions, median of {args.repeats} fresh processes each "
          f"({os.cpu_count()} CPUs, 1-min load average {load:.1f} at the end)")
    print("baseline 'import floor' (python -c 'import matplotlib.pyplot'): "
          f"{floor[0]:.2f} s wall, {floor[1]:.2f} s CPU")
    print(f"{'format':<7}{'':>5}{'export':>9}{'naive':>9}{'vs naive':>10}{'vs floor':>10}")
    for ext, ours, naive in rows:
        for k, kind in enumerate(("wall", "CPU")):
            print(f"{ext:<7}{kind:>5}{ours[k]:>8.2f}s{naive[k]:>8.2f}s"
                  f"{ours[k] / naive[k]:>9.2f}x{ours[k] / floor[k]:>9.2f}x")
    slow = [ext for ext, ours, _ in rows if ours[0] > TARGET_S]
    print(f"target <= {TARGET_S:.0f} s wall per figure: "
          + (f"MISSED for {', '.join(slow)}" if slow else "met"))
    return 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
