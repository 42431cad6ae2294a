"""`make samples`: the small bundles in artifacts/samples/, written by the current code.

The run is synthetic (no model: random labels, hidden states with a planted signal that
peaks in the middle layers at the exact-answer positions, see probeheat.bundle.synthetic);
the grid is made from it by the real probe code and names the run by a path relative
to itself. Tests and the viewer use both.
"""

from __future__ import annotations

import sys
from pathlib import Path

SAMPLE_RUN = "run-synthetic"
SAMPLE_GRID = "grid-synthetic"


def make_samples(folder: Path) -> tuple[Path, Path]:
    from .probe.grid import make_grid
    from .synthetic import write_synthetic_run

    folder.mkdir(parents=True, exist_ok=True)
    run = write_synthetic_run(folder / SAMPLE_RUN, n=200, n_layers=17, hidden=8, dtype="float16",
                              overwrite=True)
    grid = make_grid(run, folder / SAMPLE_GRID, overwrite=True, progress=False)
    return run, grid


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/samples")
    for path in make_samples(target):
        print(f"wrote {path}")
