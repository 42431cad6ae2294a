"""Nothing lost: kill -9 at any moment, two writers at once, a full disk.

A tiny random model answers 16 world-facts questions in shards of 1. The run is killed by
SIGKILL again and again (at fault points between shards, inside a shard, while a
safetensors temporary file is half written, during finalize, and at random moments) and
resumed each time; the end result must equal an uninterrupted run exactly.

A random-moment session is told to pause after its first shard, so however fast the
machine, it is still alive when the kill comes (during start-up, generation, the first
write, or the pause) and the 16 shards outlast the 21 sessions: every session is killed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from probeheat.bundle import open_run, verify_bundle

CLI = [sys.executable, "-m", "probeheat.cli", "run"]


def args_for(model: Path, out: Path) -> list[str]:
    return ["--model", str(model), "--limit", "16", "--max-new-tokens", "6", "--batch-size", "4",
            "--shard-size", "1", "--threads", "1", "--quiet", "--out", str(out)]


def start(model, out, fault: str | None = None, resume: bool = True) -> subprocess.Popen:
    env = {**os.environ, "PROBEHEAT_FAULT": fault or ""}
    return subprocess.Popen([*CLI, *args_for(model, out), *(["--resume"] if resume else [])],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def content(path: Path):
    run = open_run(path)
    keep = ("index", "id", "answer", "correct", "exact_span", "positions", "missing", "prompt_len",
            "gen_len")
    records = [{k: r.get(k) for k in keep} for r in run.records()]
    return records, {k: run.read_layer(k, as_float32=False)[0] for k in run.layers}


@pytest.fixture(scope="module")
def reference(tiny_model_folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = start(tiny_model_folder, out, resume=False)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    return out


FAULTS = ["shard-start:1", "shard-done:1", "shard-tensors:1", "shard-temp:1", None,
          "shard-done:2", None, "shard-tensors:2", "shard-temp:2", None, "shard-start:2",
          None, "shard-done:1", None, "shard-temp:1", None, "shard-done:1", None,
          "finalize-meta:1", "finalize-manifest:1", "finalize-renamed:1"]


def test_killed_twenty_times_and_resumed_equals_an_uninterrupted_run(tiny_model_folder,
                                                                    reference, tmp_path):
    out = tmp_path / "run"
    rng = random.Random(7)
    kills = 0
    for fault in FAULTS:
        proc = start(tiny_model_folder, out, f"{fault}:kill" if fault else "shard-done:1:pause")
        if fault is None:  # a random moment: during start-up, generation or a write
            time.sleep(rng.uniform(0.5, 5.0))
            proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=300)
        kills += code == -signal.SIGKILL
        assert code in (0, -signal.SIGKILL), proc.stderr.read()
    assert kills == len(FAULTS) >= 20
    final = start(tiny_model_folder, out)
    assert final.wait(timeout=300) == 0, final.stderr.read()
    assert verify_bundle(out) == [], "no stray temporaries, locks or duplicates"
    assert not out.with_name("run.partial").exists()
    got_records, got_layers = content(out)
    ref_records, ref_layers = content(reference)
    assert got_records == ref_records
    for layer, values in ref_layers.items():
        assert got_layers[layer].tobytes() == values.tobytes()


def test_two_resumes_at_once_exactly_one_proceeds(tiny_model_folder, reference, tmp_path):
    out = tmp_path / "run"
    first = start(tiny_model_folder, out, "shard-done:1:kill", resume=False)
    assert first.wait(timeout=300) == -signal.SIGKILL
    holder = start(tiny_model_folder, out, "shard-done:1:pause")  # writes, then holds the lock
    assert holder.stdout.readline().startswith("paused at shard-done")
    second = start(tiny_model_folder, out)
    assert second.wait(timeout=300) == 2
    err = second.stderr.read()
    assert f"is being written by pid {holder.pid}" in err and "Traceback" not in err
    holder.send_signal(signal.SIGKILL)  # the holder dies: its lock is free for the next one
    holder.wait(timeout=60)
    third = start(tiny_model_folder, out)
    assert third.wait(timeout=300) == 0, third.stderr.read()
    assert verify_bundle(out) == []
    assert content(out)[0] == content(reference)[0]


def small_disk(root: Path, size: str) -> bool:
    root.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)],
                          capture_output=True)
    return done.returncode == 0


def test_a_full_disk_is_one_line_and_the_run_resumes(tiny_model_folder, reference, tmp_path):
    disk = tmp_path / "disk"
    mounted = small_disk(disk, "40k")  # a real full disk where the machine lets us mount one
    out = disk / "run"
    try:
        fault = None if mounted else "shard-start:3:enospc"  # else a write that fails so
        proc = start(tiny_model_folder, out, fault, resume=False)
        assert proc.wait(timeout=300) == 2
        lines = proc.stderr.read().strip().splitlines()
        assert len(lines) == 1 and "No space left on device" in lines[0], lines
        assert "--resume" in lines[0] and "Traceback" not in lines[0]
        kept = json.loads((out.with_name("run.partial") / "run.json").read_text())
        assert kept["fingerprint"]
        if mounted:  # space returns
            subprocess.run(["mount", "-o", "remount,size=4m", str(disk)], check=True)
        resumed = start(tiny_model_folder, out)
        assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
        assert verify_bundle(out) == []
        got, want = content(out), content(reference)
        assert got[0] == want[0]
        assert all(np.array_equal(got[1][k], want[1][k]) for k in want[1])
    finally:
        if mounted:
            subprocess.run(["umount", str(disk)], capture_output=True)


def test_sigterm_keeps_the_partial_and_names_resume(tiny_model_folder, tmp_path):
    out = tmp_path / "run"
    proc = start(tiny_model_folder, out, "shard-done:1:pause", resume=False)
    assert proc.stdout.readline().startswith("paused")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    err = proc.stderr.read()
    assert "interrupted" in err and "--resume" in err and "Traceback" not in err
    assert out.with_name("run.partial").exists()
