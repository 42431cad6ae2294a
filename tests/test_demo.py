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
    assert "p vs best cell" in result.stdout and "permuted labels" in result.stdout
    assert "exact-answer policy (same answers)" in result.stdout
    symmetric = open_run(tmp_path / "runs" / f"{name}-symmetric")
    assert symmetric.meta["exact_answer_rule"] == "symmetric"
    assert [r["generated_ids"] for r in symmetric.records()] == \
        [r["generated_ids"] for r in records], "both policies read the same answers"
    assert {r["exact_answer_source"] for r in symmetric.records()} == {"heuristic"}
    assert "baselines" in open_grid(grid).meta

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


@needs_builtin
def test_probe_parity_with_sklearn_on_a_real_run(tmp_path, builtin_folder):
    """Every cell of a real run's grid matches sklearn at the same objective (|dAUC| <= 1e-3)."""
    import pytest

    linear_model = pytest.importorskip("sklearn.linear_model")
    from probeheat.cli import main
    from probeheat.probe.metrics import roc_auc
    from probeheat.probe.solver import standardizer

    run_path, grid_path = tmp_path / "run", tmp_path / "grid"
    assert main(["run", "--limit", "60", "--seed", "5", "--max-new-tokens", "32", "--batch-size",
                 "30", "--out", str(run_path), "--quiet"]) == 0
    assert main(["probe", str(run_path), "--out", str(grid_path), "--layers", "0,8,16,24,30",
                 "--quiet"]) == 0
    run, grid = open_run(run_path), open_grid(grid_path)
    labels = grid.tensor("labels").astype(int)
    train = grid.tensor("train_rows")[0]
    train = train[train >= 0]
    compared = 0
    for i, layer in enumerate(grid.layers):
        x, mask = run.read_layer(layer)
        for j, position in enumerate(grid.positions):
            ours = grid.metric("auc")[i, j]
            if np.isnan(ours):
                continue
            rows, scores, y = grid.scores(layer, position)
            fit_rows = train[mask[train, j]]
            _, mean, scale = standardizer(x[fit_rows, j].astype(np.float64))
            model = linear_model.LogisticRegression(C=1.0, tol=1e-10, max_iter=100000)
            model.fit((x[fit_rows, j] - mean) / scale, labels[fit_rows])
            theirs = roc_auc(y, model.decision_function((x[rows, j] - mean) / scale))
            assert abs(ours - theirs) <= 1e-3, (layer, position, ours, theirs)
            compared += 1
    assert compared >= 40
