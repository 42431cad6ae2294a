"""The demo pipeline end to end on a small limit: real model, real bundles, real figures."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import REPO, needs_builtin

from probeheat.bundle import open_grid, open_run, verify_bundle


@needs_builtin
def test_demo_pipeline_small(tmp_path, builtin_folder):
    result = subprocess.run([sys.executable, "-m", "probeheat.demo", "--limit", "40", "--root",
                             str(tmp_path), "--quiet"], capture_output=True, text=True,
                            timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stderr[-3000:]
    name = "world-facts-smollm2-135m-instruct-40"
    run, grid = tmp_path / "runs" / name, tmp_path / "grids" / name
    assert verify_bundle(run) == [] and verify_bundle(grid) == []
    records = open_run(run).records()
    assert len(records) == 40 and 0 < sum(r["correct"] for r in records) < 40
    auc = open_grid(grid).metric("auc")
    assert auc.shape == (31, 15) and np.isfinite(auc).any()
    assert f"probeheat view {grid}" in result.stdout

    import matplotlib.image

    png = matplotlib.image.imread(tmp_path / "figures" / f"{name}.png")
    assert png.ndim == 3 and png.shape[0] > 200 and png.shape[1] > 200
    pdf = (tmp_path / "figures" / f"{name}.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and pdf.rstrip().endswith(b"%%EOF")

    run_id = open_run(run).id
    again = subprocess.run([sys.executable, "-m", "probeheat.demo", "--limit", "40", "--root",
                            str(tmp_path), "--quiet"], capture_output=True, text=True,
                           timeout=900, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert open_run(run).id == run_id, "a second demo reuses the finished run"
