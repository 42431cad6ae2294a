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


def timed(cmd: list[str], repeats: int) -> float:
    """Median wall time of `cmd` in fresh processes (one untimed warm-up for the disk cache)."""
    subprocess.run(cmd, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
    print(f"32 layers x 15 positions, median of {args.repeats} fresh processes each")
    print(f"baseline 'import floor' (python -c 'import matplotlib.pyplot'): {floor:.2f} s")
    print(f"{'format':<8}{'export':>9}{'naive':>9}{'vs naive':>10}{'vs floor':>10}  target")
    for ext, ours, naive in rows:
        verdict = "ok" if ours <= TARGET_S else "SLOW"
        print(f"{ext:<8}{ours:>8.2f}s{naive:>8.2f}s{ours / naive:>9.2f}x{ours / floor:>9.2f}x"
              f"  <= {TARGET_S:.0f} s {verdict}")
    return 0 if all(ours <= TARGET_S for _, ours, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
