"""`probe` at scale: the solver's device option, and layers split across torchrun ranks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

from probeheat.bundle import open_grid
from probeheat.errors import UserError
from probeheat.probe.grid import make_grid
from probeheat.probe.settings import probe_settings
from probeheat.probe.solver import fit_logistic, prepare, resolve_device, solve
from probeheat.synthetic import write_synthetic_run

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


@no_gpu
def test_cuda_without_a_gpu_is_one_line(tmp_path):
    with pytest.raises(UserError, match="sees no GPU"):
        probe_settings(device="cuda")
    run = write_synthetic_run(tmp_path / "run", n=40, n_layers=2, hidden=4)
    result = subprocess.run([sys.executable, "-m", "probeheat.cli", "probe", str(run), "--out",
                             str(tmp_path / "g"), "--device", "cuda"], capture_output=True,
                            text=True, cwd=REPO)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "--device" in lines[0]
    assert not (tmp_path / "g").exists()


def test_auto_is_cpu_without_a_gpu_and_the_grid_records_it(tmp_path):
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == expected
    run = write_synthetic_run(tmp_path / "run", n=60, n_layers=2, hidden=4)
    grid = open_grid(make_grid(run, tmp_path / "g", progress=False, controls=False,
                               device="auto"))
    assert grid.meta["probe"]["device"] == expected


@needs_gpu
@pytest.mark.parametrize("n, d", [(300, 64), (200, 512)])  # primal and dual (Gram) paths
def test_the_solver_on_the_gpu_equals_the_cpu(n, d):
    from probeheat.probe.metrics import roc_auc

    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d)).astype(np.float32)
    y = (X[:, 0] + rng.standard_normal(n) > 0).astype(np.float64)
    cpu = fit_logistic(X, y)
    Xs, _, _ = prepare(X, True, torch.float32, "cuda")
    gpu = solve(Xs, torch.as_tensor(y), 1.0, 1e-8, 100)
    s_cpu = cpu.decision_function(X)
    s_gpu = ((X - cpu.mean) / cpu.scale) @ gpu.w.numpy() + gpu.b
    assert abs(roc_auc(y, s_cpu) - roc_auc(y, s_gpu)) <= 1e-6


def test_two_gloo_ranks_write_the_same_grid_as_one_process(tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=120, n_layers=5, hidden=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["probe", str(run), "--quiet", "--seeds", "0,1", "--device", "cpu"]
    one = subprocess.run([sys.executable, "-m", "probeheat.cli", *args, "--out",
                          str(tmp_path / "one")], capture_output=True, text=True, cwd=REPO,
                         env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
         "--master-port", str(29700 + os.getpid() % 1000), "-m", "probeheat.cli", *args,
         "--out", str(tmp_path / "two")], capture_output=True, text=True, cwd=REPO, env=env,
        timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = tmp_path / "one", tmp_path / "two"
    assert (a / "grid.safetensors").read_bytes() == (b / "grid.safetensors").read_bytes()
    meta_a, meta_b = (json.loads((p / "grid.json").read_text()) for p in (a, b))
    for meta in (meta_a, meta_b):
        for key in ("id", "created"):
            meta.pop(key, None)
    assert meta_a == meta_b
