"""`probeheat probe` and `probeheat generalize` from the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from probeheat.bundle import open_bundle, open_grid, verify_bundle
from probeheat.synthetic import write_synthetic_run


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probeheat.cli", *args], capture_output=True,
                          text=True, timeout=300)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    return {
        "a": write_synthetic_run(root / "a", n=120, n_layers=5, hidden=6, seed=1),
        "b": write_synthetic_run(root / "b", n=100, n_layers=5, hidden=6, seed=2),
        "one_class": write_synthetic_run(root / "one", n=40, n_layers=3, hidden=6, correct_rate=1.0),
        "other_positions": write_synthetic_run(root / "c", n=60, n_layers=5, hidden=6,
                                               positions=["last_q", "-1"]),
    }


def test_probe_writes_a_sound_grid(runs, tmp_path):
    out = tmp_path / "grid"
    result = cli("probe", str(runs["a"]), "--out", str(out), "--seeds", "0,1", "--quiet")
    assert result.returncode == 0, result.stderr
    assert verify_bundle(out) == []
    grid = open_grid(out)
    assert grid.layers == list(range(5)) and len(grid.positions) == 15
    assert grid.meta["label"] == "incorrect" and grid.meta["probe"]["seeds"] == [0, 1]
    auc = grid.metric("auc")
    assert np.nanmin(auc) >= 0 and np.nanmax(auc) <= 1
    # the planted signal is strongest at exact_answer_last in the middle layers
    assert grid.best_cell()[1] in ("exact_answer_last", "exact_answer_after_last", "exact_answer_first")


def test_probe_subset_of_layers_and_positions(runs, tmp_path):
    out = tmp_path / "grid"
    result = cli("probe", str(runs["a"]), "--out", str(out), "--layers", "1:3",
                 "--positions", "-1,last_q", "--paper", "--quiet")
    assert result.returncode == 0, result.stderr
    grid = open_grid(out)
    assert grid.layers == [1, 2, 3] and grid.positions == ["-1", "last_q"]
    assert grid.meta["probe"]["preset"] == "paper" and grid.meta["probe"]["standardize"] is False


def test_transfer_and_generalize(runs, tmp_path):
    out = tmp_path / "transfer"
    result = cli("probe", "--train", str(runs["a"]), "--test", str(runs["b"]), "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert verify_bundle(out) == []
    gen = tmp_path / "gen"
    result = cli("generalize", str(runs["a"]), str(runs["b"]), "--out", str(gen), "--quiet")
    assert result.returncode == 0, result.stderr
    bundle = open_bundle(gen)
    assert bundle.kind == "generalization" and bundle.matrix().shape == (2, 2)
    assert verify_bundle(gen) == []


@pytest.mark.parametrize("make_args, expected", [
    (lambda r, t: ["probe", str(t / "missing"), "--out", str(t / "g")], "no such file"),
    (lambda r, t: ["probe", str(r["one_class"]), "--out", str(t / "g")], "all 40 answers are correct"),
    (lambda r, t: ["probe", str(r["a"]), "--out", str(t / "g"), "--positions", "nope"], "nope"),
    (lambda r, t: ["probe", str(r["a"]), "--out", str(t / "g"), "--layers", "7:9"], "--layers"),
    (lambda r, t: ["probe", "--train", str(r["a"]), "--test", str(r["other_positions"]),
                   "--out", str(t / "g")], "position"),
    (lambda r, t: ["probe", "--train", str(r["a"]), "--out", str(t / "g")], "--train/--test"),
])
def test_bad_input_is_one_line(runs, tmp_path, make_args, expected):
    result = cli(*make_args(runs, tmp_path))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "g").exists()


def test_grid_path_is_not_a_run(runs, tmp_path):
    grid = tmp_path / "grid"
    assert cli("probe", str(runs["a"]), "--out", str(grid), "--quiet").returncode == 0
    result = cli("probe", str(grid), "--out", str(tmp_path / "g2"))
    assert result.returncode == 2 and "not a run bundle" in result.stderr


def test_report_gives_the_token_baseline_of_the_best_cell(runs, tmp_path):
    """Layer 0 is the token embedding: the report puts the best cell next to it."""
    result = cli("probe", str(runs["a"]), "--out", str(tmp_path / "g"))
    assert result.returncode == 0, result.stderr
    grid = open_grid(tmp_path / "g")
    layer, position, value = grid.best_cell()
    baseline = grid.metric("auc")[0, grid.positions.index(position)]
    assert (f"best cell: layer {layer}, {position}, AUC {value:.3f} "
            f"(layer 0, the token alone: {baseline:.3f})") in result.stderr
