"""The GPU benchmark's tiny mode runs anywhere, so the script works before a GPU is at hand."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, needs_builtin


@needs_builtin
def test_the_gpu_benchmark_runs_on_a_tiny_config(tmp_path, builtin_folder):
    out = tmp_path / "gpu.json"
    result = subprocess.run([sys.executable, "benchmarks/gpu.py", "--tiny", "--n", "8",
                             "--batch-size", "4", "--max-new-tokens", "4", "--json", str(out)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["tiny"] and data["capture"]["ratio_vs_plain_generate"] > 0
    assert data["capture"]["probeheat"]["tokens"] > 0
    assert data["probes"]["cells"] == 6 and data["probes"]["max_abs_dauc"] <= 1e-6
    assert data["heads"]["cells"] == 16 and data["heads"]["max_abs_dauc"] <= 1e-6
    assert data["heads"]["speedup"] > 0
    assert "probeheat / plain" in result.stdout
