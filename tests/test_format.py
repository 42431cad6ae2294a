"""FORMAT.md is the truth: a reader written from it alone reads what probeheat writes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from format_reader import Grid, Run, check_record_positions

from probeheat.bundle import open_grid, open_run

SAMPLES = REPO / "artifacts" / "samples"


def same_as_probeheat(run: Run, folder: Path) -> None:
    ours = open_run(folder)
    assert [r["index"] for r in ours.records()] == [r["index"] for r in run.records]
    for k in run.meta["layers"]:
        X, mask = run.layer(k)
        X2, mask2 = ours.read_layer(k, as_float32=False)
        assert X.tobytes() == X2.tobytes() and (mask == mask2).all()


def check_run(folder: Path) -> Run:
    run = Run(folder)
    X, mask = run.layer(run.meta["layers"][0])
    for r, record in enumerate(run.records):
        check_record_positions(record, run.meta["positions"])
        assert [p in record["positions"] for p in run.meta["positions"]] == mask[r].tolist()
        assert not X[r][~mask[r]].any(), "missing positions are stored as zeros"
    same_as_probeheat(run, folder)
    return run


def test_sample_run_follows_the_format():
    run = check_run(SAMPLES / "run-synthetic")
    spans = [r for r in run.records if r["exact_span"] is None]
    assert spans and all("exact_answer_last" in r["missing"] for r in spans)


def test_sample_grid_follows_the_format():
    grid = Grid(SAMPLES / "grid-synthetic")
    assert grid.run_folder() == (SAMPLES / "run-synthetic").resolve()
    assert not Path(grid.meta["run"]["path"]).is_absolute()
    run = Run(grid.run_folder())
    assert grid.t["labels"].tolist() == [0 if r["correct"] else 1 for r in run.records]
    test_ids = grid.meta["splits"][0]["test_ids"]
    rows = grid.t["test_rows"][0]
    assert test_ids == [run.records[r]["id"] for r in rows if r >= 0]
    auc = grid.t["auc_by_seed"][0]
    for i in range(len(grid.meta["layers"])):
        for j in range(len(grid.meta["positions"])):
            if np.isfinite(auc[i, j]):
                assert grid.auc_from_scores(0, i, j) == pytest.approx(auc[i, j], abs=1e-12)
    assert open_grid(SAMPLES / "grid-synthetic").find_run().id == run.meta["id"]


def test_a_fresh_run_follows_the_format(tiny_model_folder, tmp_path):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "probeheat.cli", "run", "--model", str(tiny_model_folder),
         "--limit", "7", "--max-new-tokens", "6", "--batch-size", "3", "--shard-size", "2",
         "--positions", "default,exact_answer_last+1,last_q-2,-12", "--out", str(out),
         "--quiet"], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stderr
    run = check_run(out)
    assert len(run.shards) == 4, "shards of --shard-size examples each"
    meta = json.loads((out / "run.json").read_text())
    assert meta["model"]["model_id"] == str(tiny_model_folder)
    assert meta["prompt"]["kind"] == "chat" and meta["prompt"]["template"] == "auto"
    for record in run.records:
        assert record["positions"]["last_q"] == record["prompt_len"] - 1
