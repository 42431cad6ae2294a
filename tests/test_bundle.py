"""Bundles: round trips, atomic writes, resume bookkeeping, migration and refusal of bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest
from conftest import REPO
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from probeheat.bundle import (
    BundleWriter,
    RunWriter,
    open_bundle,
    open_grid,
    open_run,
    verify_bundle,
    write_grid,
)
from probeheat.bundle.manifest import build_manifest, sha256_file
from probeheat.bundle.migrate import (
    MIGRATIONS,
    MINOR_MIGRATIONS,
    upgrade,
    v0_to_v1,
    v1_0_to_v1_1,
    v1_1_to_v1_2,
    v1_2_to_v1_3,
    v1_3_to_v1_4,
)
from probeheat.errors import UserError
from probeheat.synthetic import write_synthetic_run

DTYPES = {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> Path:
    return write_synthetic_run(tmp_path_factory.mktemp("runs") / "run", n=40, n_layers=4, hidden=6,
                               shard_size=16)


@pytest.fixture(scope="module")
def sample_grid(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    meta = {"layers": [0, 1, 2], "positions": ["last_q", "-1"], "metrics": ["auc"],
            "nan_reasons": [{"layer": 2, "position": "-1", "reason": "one class in test"}]}
    auc = rng.uniform(0.5, 0.9, (3, 2))
    auc[2, 1] = np.nan
    return write_grid(tmp_path_factory.mktemp("grids") / "grid", meta, {"auc": auc})


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def tree_state(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in root.rglob("*") if p.is_file()}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "probeheat.cli", *args], capture_output=True,
                          text=True, timeout=120)


def refresh_manifest(root: Path) -> None:
    """Re-checksum after a deliberate edit, so only the semantic check can catch it."""
    old = json.loads((root / "manifest.json").read_text())
    new = build_manifest(root, old["kind"], old["id"], old["created"], old["writer"])
    (root / "manifest.json").write_text(json.dumps(new))


# --- round trips -------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    dtype=st.sampled_from(sorted(DTYPES)),
    n=st.integers(1, 7), n_pos=st.integers(1, 4), hidden=st.integers(1, 9),
    shard_size=st.integers(1, 5), data=st.data(),
)
def test_run_round_trip_is_exact(tmp_path_factory, dtype, n, n_pos, hidden, shard_size, data):
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, 2, n_pos, hidden)) * 100).astype(DTYPES[dtype])
    mask = rng.random((n, n_pos)) < 0.8
    positions = [f"-{i + 1}" for i in range(n_pos)]
    meta = {"fingerprint": "rt", "positions": positions, "layers": [0, 1],
            "sites": {"resid": [0, 1]}, "hidden_size": hidden, "dtype": dtype}
    out = tmp_path_factory.mktemp("rt") / "run"
    writer = RunWriter(out, meta)
    order = rng.permutation(n)  # shards need not be in dataset order
    for start in range(0, n, shard_size):
        rows = order[start:start + shard_size]
        records = [{"index": int(i), "id": f"e{i}", "correct": bool(i % 2)} for i in rows]
        writer.add_shard(records, {"resid.0": x[rows, 0], "resid.1": x[rows, 1]}, mask[rows])
    writer.finalize()
    run = open_run(out)
    assert [r["index"] for r in run.records()] == list(range(n))
    for layer in (0, 1):
        got, got_mask = run.read_layer(layer, as_float32=False)
        assert got.dtype == np.dtype(DTYPES[dtype])
        assert got.tobytes() == x[:, layer].tobytes()
        assert (got_mask == mask).all()
    assert verify_bundle(out) == []


@settings(max_examples=25, deadline=None)
@given(dtype=st.sampled_from(sorted(DTYPES)),
       shape=st.lists(st.integers(0, 5), min_size=0, max_size=4), seed=st.integers(0, 1000))
def test_grid_tensor_round_trip_is_exact(tmp_path_factory, dtype, shape, seed):
    values = (np.random.default_rng(seed).standard_normal(shape) * 10).astype(DTYPES[dtype])
    meta = {"layers": [0], "positions": ["last_q"], "metrics": ["auc"]}
    out = tmp_path_factory.mktemp("g") / "grid"
    write_grid(out, meta, {"auc": np.array([[0.7]]), "extra": values})
    got = open_grid(out).tensor("extra")
    assert got.dtype == values.dtype and got.shape == values.shape
    assert got.tobytes() == values.tobytes()


def test_grid_reader(sample_grid):
    grid = open_grid(sample_grid)
    assert grid.layers == [0, 1, 2] and grid.positions == ["last_q", "-1"]
    assert np.isnan(grid.metric("auc")[2, 1])
    assert grid.reasons() == {(2, "-1"): "one class in test"}
    layer, position, value = grid.best_cell()
    assert value == np.nanmax(grid.metric("auc"))
    with pytest.raises(UserError, match="unknown metric"):
        grid.metric("nope")


def test_read_layer_reads_only_that_layer(sample_run, monkeypatch):
    import probeheat.bundle.run as runmod

    asked = []
    real = runmod.get_tensor
    monkeypatch.setattr(runmod, "get_tensor",
                        lambda f, name, path, *rest: asked.append(name) or real(f, name, path, *rest))
    open_run(sample_run).read_layer(2)
    # one layer's tensor, plus each shard's mask and index (checked against its records)
    assert set(asked) == {"resid.2", "mask", "index"}


def test_opening_reads_only_the_manifest(sample_run, monkeypatch):
    import probeheat.bundle.base as base

    monkeypatch.setattr(base, "safe_open", lambda *a, **k: pytest.fail("tensors opened"))
    bundle = open_bundle(sample_run)
    assert bundle.kind == "run" and bundle.positions and bundle.n_examples == 40


# --- atomic writes and resume ------------------------------------------------------------

def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with BundleWriter(tmp_path / "grid", "grid") as writer:
            writer.write_json("grid.json", {})
            raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []


def test_existing_bundle_is_not_replaced_without_overwrite(sample_grid, tmp_path):
    target = copy(sample_grid, tmp_path)
    before = tree_state(target)
    meta = {"layers": [0], "positions": ["last_q"], "metrics": ["auc"]}
    with pytest.raises(UserError, match="already exists"):
        write_grid(target, meta, {"auc": np.array([[0.6]])})
    assert tree_state(target) == before
    write_grid(target, meta, {"auc": np.array([[0.6]])}, overwrite=True)
    assert open_grid(target).layers == [0]


def test_run_writer_resume_rules(tmp_path):
    meta = {"fingerprint": "A", "positions": ["-1"], "layers": [0], "sites": {"resid": [0]},
            "hidden_size": 2, "dtype": "float32"}
    out = tmp_path / "run"
    writer = RunWriter(out, meta)
    writer.add_shard([{"index": 0, "id": "a", "correct": True}],
                     {"resid.0": np.zeros((1, 1, 2), np.float32)}, np.ones((1, 1), bool))
    assert not out.exists(), "an unfinished run must not look like a bundle"
    with pytest.raises(UserError, match="unfinished run"):
        RunWriter(out, meta)
    with pytest.raises(UserError, match="different inputs"):
        RunWriter(out, {**meta, "fingerprint": "B"}, resume=True)
    resumed = RunWriter(out, meta, resume=True)
    assert resumed.done_indices() == {0}
    resumed.add_shard([{"index": 1, "id": "b", "correct": False}],
                      {"resid.0": np.ones((1, 1, 2), np.float32)}, np.ones((1, 1), bool))
    resumed.finalize()
    assert [r["id"] for r in open_run(out).records()] == ["a", "b"]
    assert verify_bundle(out) == []


def test_half_written_shard_is_redone_on_resume(tmp_path):
    meta = {"fingerprint": "A", "positions": ["-1"], "layers": [0], "sites": {"resid": [0]},
            "hidden_size": 2, "dtype": "float32"}
    out = tmp_path / "run"
    writer = RunWriter(out, meta)
    stem = writer.add_shard([{"index": 0, "id": "a", "correct": True}],
                            {"resid.0": np.zeros((1, 1, 2), np.float32)}, np.ones((1, 1), bool))
    stem.with_suffix(".json").unlink()  # killed between the tensors and the records
    assert RunWriter(out, meta, resume=True).done_indices() == set()
    assert not stem.with_suffix(".safetensors").exists()


# --- migration ---------------------------------------------------------------------------

def make_v0(root: Path) -> None:
    manifest = json.loads((root / "manifest.json").read_text())
    legacy = {"probeheat_format": 0, "type": manifest["kind"], "id": manifest["id"],
              "checksums": {k: v["sha256"] for k, v in manifest["files"].items()}}
    (root / "manifest.json").write_text(json.dumps(legacy))


def test_v0_manifest_is_migrated_in_memory(sample_grid, tmp_path):
    root = copy(sample_grid, tmp_path)
    make_v0(root)
    before = tree_state(root)
    grid = open_grid(root)
    assert grid.manifest["migrated_from"] == "0" and grid.manifest["format_version"] == "1.0"
    assert grid.best_cell() == open_grid(sample_grid).best_cell()
    assert verify_bundle(root) == []
    assert tree_state(root) == before, "reading must never rewrite a bundle"


def test_every_migration_step_is_registered_and_tested():
    assert MIGRATIONS == {0: v0_to_v1}
    assert MINOR_MIGRATIONS == {(1, 0): v1_0_to_v1_1, (1, 1): v1_1_to_v1_2,
                                (1, 2): v1_2_to_v1_3, (1, 3): v1_3_to_v1_4}


def test_a_1_2_run_and_grid_read_as_without_samples_and_predicting_errors(tmp_path):
    from hostile import refresh_manifest

    from probeheat.bundle.manifest import seal
    from probeheat.probe.grid import make_grid

    run = write_synthetic_run(tmp_path / "run", n=40, n_layers=2, hidden=4)
    grid = make_grid(run, tmp_path / "grid", progress=False, controls=False)
    for path, meta_name, key in ((run, "run.json", "samples"), (grid, "grid.json", "target")):
        meta = json.loads((path / meta_name).read_text())
        meta.pop(key, None)
        (path / meta_name).write_text(json.dumps(meta))
        refresh_manifest(path)
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["format_version"] = "1.2"
        (path / "manifest.json").write_text(json.dumps(seal(manifest)))
    assert open_run(run).samples is None and open_run(run).meta["samples"] is None
    assert open_grid(grid).meta["target"] == "correct"


def test_a_1_0_grid_with_an_absolute_run_path_reads_as_relative(tmp_path):
    from probeheat.probe.grid import make_grid

    run = write_synthetic_run(tmp_path / "runs" / "r", n=40, n_layers=2, hidden=4)
    grid_path = make_grid(run, tmp_path / "grids" / "g", progress=False)
    meta = json.loads((grid_path / "grid.json").read_text())
    assert meta["run"]["path"] == "../../runs/r"
    meta["run"]["path"] = str(run.resolve())  # what format 1.0 wrote
    (grid_path / "grid.json").write_text(json.dumps(meta))
    refresh_manifest(grid_path)
    manifest = json.loads((grid_path / "manifest.json").read_text())
    manifest["format_version"] = "1.0"  # 1.0 manifests carried no seal
    del manifest["manifest_sha256"]
    (grid_path / "manifest.json").write_text(json.dumps(manifest))
    before = tree_state(grid_path)
    grid = open_grid(grid_path)
    assert grid.run_ref["path"] == "../../runs/r"
    assert grid.find_run().id == open_run(run).id
    assert tree_state(grid_path) == before, "reading must never rewrite a bundle"


def test_newer_major_version_is_refused(tmp_path):
    with pytest.raises(UserError, match="newer than this probeheat reads"):
        upgrade({"format": "probeheat-bundle", "format_version": "2.0", "kind": "grid"}, tmp_path)


# --- bad input through the CLI: one line, non-zero exit, no traceback, nothing modified ----

def corrupt_truncate_manifest(root):
    path = root / "manifest.json"
    path.write_bytes(path.read_bytes()[:40])


def corrupt_invalid_manifest(root):
    (root / "manifest.json").write_text("{not json")


def corrupt_truncate_shard(root):
    shard = sorted((root / "shards").glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:-100])


def corrupt_flip_byte(root):
    shard = sorted((root / "shards").glob("*.safetensors"))[0]
    data = bytearray(shard.read_bytes())
    data[-5] ^= 0xFF
    shard.write_bytes(bytes(data))


def corrupt_shape(root):
    shard = sorted((root / "shards").glob("*.safetensors"))[0]
    from safetensors.numpy import load_file

    tensors = load_file(str(shard))
    tensors["resid.1"] = tensors["resid.1"][:, :, :3].copy()
    save_file(tensors, str(shard))
    refresh_manifest(root)


def corrupt_newer_version(root):
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format_version"] = "9.0"
    (root / "manifest.json").write_text(json.dumps(manifest))


def corrupt_parent_entry(root):
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["../x.json"] = {"sha256": "0" * 64, "size": 1}
    (root / "manifest.json").write_text(json.dumps(manifest))


def corrupt_absolute_entry(root):
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["/etc/passwd.json"] = {"sha256": "0" * 64, "size": 1}
    (root / "manifest.json").write_text(json.dumps(manifest))


def plant_pickle(root):
    import pickle

    (root / "shards" / "evil.pkl").write_bytes(pickle.dumps({"x": 1}))


def plant_listed_pickle(root):
    import pickle

    (root / "evil.pkl").write_bytes(pickle.dumps({"x": 1}))
    refresh_manifest(root)


CASES = {
    "truncated manifest": (corrupt_truncate_manifest, "manifest.json: invalid JSON"),
    "invalid manifest": (corrupt_invalid_manifest, "manifest.json: invalid JSON"),
    "truncated shard": (corrupt_truncate_shard, "size"),
    "flipped byte": (corrupt_flip_byte, "sha256 does not match"),
    "shape disagrees": (corrupt_shape, "has shape [16, 15, 3], metadata says [16, 15, 6]"),
    "newer version": (corrupt_newer_version, "newer than this probeheat reads"),
    "entry ../x": (corrupt_parent_entry, "points outside the bundle"),
    "absolute entry": (corrupt_absolute_entry, "points outside the bundle"),
    "planted pickle": (plant_pickle, "evil.pkl: not listed in the manifest (never loaded"),
    "listed pickle": (plant_listed_pickle, "type probeheat never loads"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_verify_catches_corruption(case, sample_run, tmp_path):
    corrupt, expected = CASES[case]
    root = copy(sample_run, tmp_path)
    corrupt(root)
    before = tree_state(root)
    result = cli("verify", str(root))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert expected in result.stderr
    assert tree_state(root) == before


@pytest.mark.parametrize("case", ["truncated manifest", "newer version", "entry ../x", "listed pickle"])
def test_inspect_refuses_bad_manifests_in_one_line(case, sample_run, tmp_path):
    corrupt, expected = CASES[case]
    root = copy(sample_run, tmp_path)
    corrupt(root)
    result = cli("inspect", str(root))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_reading_a_damaged_shard_is_one_line(sample_run, tmp_path):
    root = copy(sample_run, tmp_path)
    corrupt_truncate_shard(root)
    with pytest.raises(UserError, match="size .* bytes, the manifest says"):
        open_run(root).read_layer(0)  # refused before a value is read
    refresh_manifest(root)  # checksums made to match: the safetensors header itself is bad
    with pytest.raises(UserError, match="not a readable safetensors file"):
        open_run(root).read_layer(0)


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "missing", "no such file or directory"),
    (lambda tmp: tmp, "not a probeheat bundle: no manifest.json"),
    (lambda tmp: (tmp / "f.txt").write_text("x") and tmp / "f.txt", "not a bundle"),
    # probe --probe a,b writes OUT/<family>: the line names them and the path to pass
    (lambda tmp: [shutil.copytree(REPO / "artifacts" / "samples" / "grid-synthetic",
                                  tmp / "g" / name, dirs_exist_ok=True)
                  for name in ("logistic", "mass-mean")]
     and tmp / "g", "is a folder of bundles (logistic, mass-mean), not a bundle (pass one "
     "of them, e.g. "),
])
def test_paths_that_are_not_bundles(make, expected, tmp_path):
    for command in ("verify", "inspect"):
        result = cli(command, str(make(tmp_path)))
        assert result.returncode != 0 and expected in result.stderr
        assert "Traceback" not in result.stderr


# --- the CLI on sound bundles ------------------------------------------------------------

def test_verify_and_inspect_sound_bundles(sample_run, sample_grid):
    assert cli("verify", str(sample_run), str(sample_grid)).returncode == 0
    summary = json.loads(cli("inspect", "--json", str(sample_run)).stdout)
    assert summary["kind"] == "run" and summary["examples"] == 40
    assert summary["positions"][0] == "last_q"
    summary = json.loads(cli("inspect", "--json", str(sample_grid)).stdout)
    assert summary["best_cell"]["layer"] in (0, 1, 2)
    table = cli("inspect", str(sample_grid)).stdout
    assert "best_cell" in table and f"layer: {summary['best_cell']['layer']}" in table
    assert '{"' not in table  # objects read as lines, not as JSON


def test_inspect_shows_nested_values_as_they_read():
    from probeheat.commands.inspect import shown

    assert shown(["auc", "ece"]) == "auc, ece"
    assert shown({"layer": 8, "interval": [0.8, 1.0], "null": {"median": 0.5, "k": 20}}) == (
        "layer: 8\ninterval: [0.8, 1.0]\nnull: median 0.5 · k 20")
    assert shown({"scored": {"len": {"auc": 0.6, "n": 40}}}) == "scored: len (auc 0.6 · n 40)"
    assert shown({"absent": {"a": "no run", "b": "no column", "c": "no run"}}) == (
        "absent: a, c: no run; b: no column")


def test_import_probeheat_is_light():
    heavy = ["torch", "transformers", "textual", "matplotlib"]
    code = ("import sys, probeheat, probeheat.bundle, probeheat.cli; probeheat.cli.build_parser(); "
            f"print([m for m in {heavy!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_committed_samples_are_sound_and_linked():
    samples = Path(__file__).resolve().parents[1] / "artifacts" / "samples"
    run_path, grid_path = samples / "run-synthetic", samples / "grid-synthetic"
    assert verify_bundle(run_path) == [] and verify_bundle(grid_path) == []
    grid = open_grid(grid_path)
    run = grid.find_run()  # found beside the grid even when the recorded path is elsewhere
    assert run is not None and run.id == grid.run_ref["id"]
    assert len(grid.tensor("labels")) == run.n_examples


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_bundle_files_follow_the_umask(tmp_path, mask):
    """Shards, grids and JSON files get the permissions any file of the user would get."""
    import os
    import subprocess
    import sys

    script = (f"import os; os.umask({mask}); "
              "from probeheat.synthetic import write_synthetic_run; "
              "from probeheat.probe.grid import make_grid; "
              f"r = write_synthetic_run({str(tmp_path / 'run')!r}, n=60, n_layers=2, hidden=4); "
              f"make_grid(r, {str(tmp_path / 'grid')!r}, progress=False)")
    subprocess.run([sys.executable, "-c", script], check=True)
    want = 0o666 & ~mask
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 7 and {p.suffix for p in files} == {".json", ".safetensors"}
    assert {oct(os.stat(p).st_mode & 0o777) for p in files} == {oct(want)}
