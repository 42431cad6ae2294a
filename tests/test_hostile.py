"""Hostile input: each failure a hostile user found has its regression test here.

Every refusal is one line on stderr and a non-zero exit, never a traceback, never a silent
wrong result, and the input bundle is left as it was.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import needs_builtin
from hostile import cli, copy_sample, edit_json, first_shard, refresh_manifest, set_header
from safetensors.numpy import load_file, save_file

from probeheat.bundle import open_grid, verify_bundle
from probeheat.data import load_dataset
from probeheat.errors import UserError

RUN, GRID = "run-synthetic", "grid-synthetic"


@pytest.fixture
def run(tmp_path):
    return copy_sample(RUN, tmp_path)


@pytest.fixture
def grid(tmp_path):
    (tmp_path / "pair").mkdir()
    copy_sample(RUN, tmp_path / "pair")  # beside the grid, where its relative path points
    return copy_sample(GRID, tmp_path / "pair")


def refused_by(commands, expected: str | None = None) -> None:
    for args in commands:
        result = cli(*args)
        assert result.one_line, (args, result)
        if expected:
            assert expected in result.err, (args, result.err)


def probe_and_inspect(run, tmp_path):
    return [("probe", run, "--out", tmp_path / "g", "--quiet"), ("inspect", run)]


# --- data lost or damaged --------------------------------------------------------------------

def test_probe_out_equal_to_or_inside_its_input_is_refused(run, grid, tmp_path):
    before = (run / "manifest.json").read_bytes()
    refused_by([("probe", run, "--out", run, "--overwrite", "--quiet"),
                ("probe", run, "--out", run / "shards" / "g", "--quiet"),
                ("export", grid, "-o", grid / "fig.png")], "inside the input bundle")
    assert (run / "manifest.json").read_bytes() == before
    assert verify_bundle(run) == [] and verify_bundle(grid) == []


def test_jsonl_with_a_byte_order_mark_keeps_its_first_row(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"question": "A?", "answers": ["a"]}, {"question": "B?", "answers": ["b"]}]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(r) for r in rows).encode())
    ds = load_dataset(str(path), seed=None)
    assert [e.question for e in ds.examples] == ["A?", "B?"] and ds.skipped == []


# --- silent wrong results --------------------------------------------------------------------

def flip_a_bit(path):
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))


def test_a_flipped_bit_is_never_probed_or_exported(run, grid, tmp_path):
    flip_a_bit(first_shard(run))
    flip_a_bit(grid / "grid.safetensors")
    refused_by([("probe", run, "--out", tmp_path / "g", "--quiet"),
                ("export", grid, "-o", tmp_path / "f.png")], "sha256 does not match")
    assert not (tmp_path / "g").exists() and not (tmp_path / "f.png").exists()
    # a user who knows better can read it anyway
    assert cli("export", grid, "-o", tmp_path / "f.png", "--no-verify").code == 0


def test_a_truncated_copy_with_a_recomputed_size_is_refused(run, tmp_path):
    shard = first_shard(run)
    shard.write_bytes(shard.read_bytes()[:-64])
    edit_json(run / "manifest.json", lambda m: m["files"][
        f"shards/{shard.name}"].update(size=shard.stat().st_size))
    refused_by(probe_and_inspect(run, tmp_path)[:1], "sha256 does not match")


def test_a_header_that_lies_about_the_dtype_is_refused(run, tmp_path):
    def bf16(header):
        for name, entry in header.items():
            if name != "__metadata__" and entry["dtype"] == "F16":
                entry["dtype"] = "BF16"  # same size: the bytes now read as other numbers
    set_header(first_shard(run), bf16)
    refresh_manifest(run)  # checksums match: only the dtype check can catch it
    refused_by([("probe", run, "--out", tmp_path / "g", "--quiet")], "has dtype BF16")
    assert verify_bundle(run) and "BF16" in verify_bundle(run)[0]


def change_grid_tensors(grid, change) -> None:
    path = grid / "grid.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))
    refresh_manifest(grid)


@pytest.mark.parametrize("change, expected", [
    (lambda t: t.update(auc=t["auc"].astype(np.int64)), "has dtype I64"),
    (lambda t: t["auc"].__setitem__((0, 0), np.inf), "infinite"),
    (lambda t: t["auc"].__setitem__((0, 0), 1.5), "outside [0, 1]"),
    (lambda t: t.update(auc=t["auc"][:, :-1].copy()), "has shape"),
])
def test_grid_metrics_the_format_forbids_are_refused(grid, tmp_path, change, expected):
    change_grid_tensors(grid, change)
    refused_by([("export", grid, "-o", tmp_path / "f.png"), ("inspect", grid)], expected)
    assert expected in " ".join(verify_bundle(grid))
    from probeheat.tui.app import ViewerApp

    screens = ViewerApp([grid]).first_screens()
    assert type(screens[0]).__name__ == "MessageScreen" and len(screens[0].lines) == 1


@pytest.mark.parametrize("name, change, expected", [
    ("labels", lambda t: t.update(labels=t["labels"] * 3), "labels other than 0 and 1"),
    ("test_rows", lambda t: t.update(test_rows=t["test_rows"][0]), "has shape"),
    ("scores", lambda t: t.update(scores=t["scores"].astype(np.float64)), "has dtype F64"),
])
def test_grid_rows_and_scores_the_format_forbids_are_refused(grid, name, change, expected):
    """Export and inspect never read these (their output is unchanged); whoever reads them
    (verify, the viewer's cell detail and browser) refuses them."""
    change_grid_tensors(grid, change)
    assert expected in " ".join(verify_bundle(grid))
    with pytest.raises(UserError, match=expected):
        open_grid(grid).tensor(name)


def test_a_nan_cell_without_a_reason_fails_verify(grid):
    path = grid / "grid.safetensors"
    tensors = load_file(str(path))
    tensors["auc"][3, 3] = np.nan
    save_file(tensors, str(path))
    refresh_manifest(grid)
    problems = verify_bundle(grid)
    assert len(problems) == 1 and "nan_reasons does not say why" in problems[0]


@pytest.mark.parametrize("key, value, expected", [
    ("positions", "abc", "'positions'"),
    ("sites", {"resid": 5}, "'sites'"),
    ("n_examples", "many", "'n_examples'"),
    ("hidden_size", 0, "'hidden_size'"),
    ("dtype", "int8", "'dtype'"),
])
def test_run_json_values_of_the_wrong_kind_are_refused(run, tmp_path, key, value, expected):
    edit_json(run / "run.json", lambda m: m.update({key: value}))
    refresh_manifest(run)
    refused_by(probe_and_inspect(run, tmp_path), expected)


def test_an_example_in_two_shards_is_refused(run, tmp_path):
    for suffix in (".json", ".safetensors"):
        shutil.copy(first_shard(run, suffix), run / "shards" / f"shard-r000-00009{suffix}")
    refresh_manifest(run)
    refused_by(probe_and_inspect(run, tmp_path)[:1], "appears twice")


@pytest.mark.parametrize("change, expected", [
    (lambda rs: rs[1].update(index=rs[0]["index"]), "appears twice"),
    (lambda rs: rs[0].pop("index"), "lacks 'index'"),
    (lambda rs: rs[0].pop("correct"), "lacks 'correct'"),
    (lambda rs: rs.__setitem__(0, "not an object"), "not an object"),
    (lambda rs: rs[0].update(correct="yes"), "'correct'"),
    (lambda rs: rs.pop(), "example indices are not 0..198"),  # one example lost
])
def test_records_that_break_the_format_are_refused(run, tmp_path, change, expected):
    edit_json(first_shard(run, ".json"), lambda d: change(d["records"]))
    refresh_manifest(run)
    refused_by(probe_and_inspect(run, tmp_path)[:1], expected)


def test_a_file_listed_twice_under_two_spellings_is_refused(run, tmp_path):
    def twice(manifest):
        manifest["files"]["./run.json"] = manifest["files"]["run.json"]
    edit_json(run / "manifest.json", twice)
    refused_by(probe_and_inspect(run, tmp_path), "canonical form")


def test_shards_that_disagree_with_the_metadata_are_refused(run, tmp_path):
    shard = first_shard(run)
    tensors = load_file(str(shard))
    tensors["resid.3"] = tensors["resid.3"][:, :, :5].copy()  # d=5 among d=8
    save_file(tensors, str(shard))
    refresh_manifest(run)
    refused_by([("probe", run, "--out", tmp_path / "g", "--quiet")], "has shape")


def test_a_shard_with_fewer_rows_than_records_is_refused(run, tmp_path):
    shard = first_shard(run)
    tensors = {k: v[:-1].copy() for k, v in load_file(str(shard)).items()}
    save_file(tensors, str(shard))
    refresh_manifest(run)
    refused_by([("probe", run, "--out", tmp_path / "g", "--quiet")], "has shape")


def test_grid_metadata_of_the_wrong_kind_is_refused(grid, tmp_path):
    edit_json(grid / "grid.json", lambda m: m.update(layers=[str(x) for x in m["layers"]]))
    refresh_manifest(grid)
    refused_by([("export", grid, "-o", tmp_path / "f.png"), ("inspect", grid)], "'layers'")


@pytest.mark.parametrize("change, expected", [
    (lambda m: m["files"]["run.json"].update(size="big"), "size"),
    (lambda m: m.update(files=[]), "'files'"),
])
def test_manifests_of_the_wrong_kind_are_refused(run, tmp_path, change, expected):
    edit_json(run / "manifest.json", change)
    refused_by(probe_and_inspect(run, tmp_path) + [("verify", run)], expected)


def test_a_malformed_old_format_manifest_is_refused(run, tmp_path):
    (run / "manifest.json").write_text(json.dumps({"probeheat_format": 0, "type": "run",
                                                    "checksums": "everything is fine"}))
    refused_by(probe_and_inspect(run, tmp_path), "version 0 manifest")


def test_missing_ids_are_skipped_and_counted_not_made_up(tmp_path):
    path = tmp_path / "qa.jsonl"
    rows = [{"id": "a", "question": "A?", "answers": ["a"]}, {"question": "B?", "answers": ["b"]},
            {"id": None, "question": "C?", "answers": ["c"]}, {"question": "D?", "answers": ["d"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_dataset(str(path), seed=None, id_column="id")
    assert [e.id for e in ds.examples] == ["a"]
    assert [n for n, _ in ds.skipped] == [2, 3, 4] and "--missing-id row" in ds.skipped[0][1]
    numbered = load_dataset(str(path), seed=None, missing_id="row")  # 'id' found by itself
    assert [e.id for e in numbered.examples] == ["a", "qa/2", "qa/3", "qa/4"]


def test_reversed_and_empty_selections_are_refused_before_reading(tmp_path):
    missing = tmp_path / "no-such-run"  # never opened: the arguments are checked first
    refused_by([("probe", missing, "--out", tmp_path / "g", "--layers", "5:2")], "runs backwards")
    refused_by([("probe", missing, "--out", tmp_path / "g", "--positions", "")], "selects nothing")
    refused_by([("export", missing, "-o", tmp_path / "f.png", "--layers", "9:1")], "backwards")


def test_numeric_arguments_are_checked_before_any_work(run, tmp_path):
    refused_by([("probe", run, "--out", tmp_path / "g", "--C", "inf")], "--C")
    refused_by([("probe", run, "--out", tmp_path / "g", "--seeds", "-1")], "--seeds")
    refused_by([("probe", run, "--out", "/proc/x/grid")], "cannot create")
    refused_by([("run", "--out", tmp_path / "r", "--grader", "nope")], "unknown grader")
    refused_by([("run", "--out", tmp_path / "r", "--shard-size", "0")], "--shard-size")


def test_a_title_matplotlib_cannot_draw_is_one_line(grid, tmp_path):
    refused_by([("export", grid, "-o", tmp_path / "f.png", "--title", "$\\frac{a}{$")],
               "not valid mathtext")
    assert cli("export", grid, "-o", tmp_path / "f.png", "--title", "costs \\$5").code == 0


def test_a_run_where_no_cell_can_be_fitted_is_an_error_with_its_reason(tmp_path):
    from probeheat.synthetic import write_synthetic_run

    run = write_synthetic_run(tmp_path / "r", n=12, n_layers=2, hidden=4)
    refused_by([("probe", run, "--out", tmp_path / "g", "--quiet")], "too few")
    assert not (tmp_path / "g").exists()


def test_deeply_nested_json_is_one_line_everywhere(run, tmp_path):
    deep = "[" * 200_000 + "]" * 200_000
    (run / "run.json").write_text(deep)
    refresh_manifest(run)
    refused_by(probe_and_inspect(run, tmp_path) + [("verify", run)], "nested")
    from probeheat.tui.model import find_bundles

    entries = find_bundles(tmp_path)
    assert [e.kind for e in entries] == ["error"] and "nested" in entries[0].error
    data = tmp_path / "deep.jsonl"
    data.write_text('{"question": "A?", "answers": ["a"]}\n{"x": ' + deep + "}\n")
    assert load_dataset(str(data), seed=None).skipped == [(2, "nested too deeply to be a "
                                                              "question row")]
    with pytest.raises(UserError, match="nested too deeply"):
        (tmp_path / "deep.json").write_text(deep)
        load_dataset(str(tmp_path / "deep.json"))


def test_a_csv_field_over_128_kb_is_read(tmp_path):
    path = tmp_path / "qa.csv"
    long_question = "Which word is this? " + "x" * 200_000
    path.write_text(f"question,answers\n\"{long_question}\",x\nB?,b\n")
    ds = load_dataset(str(path), seed=None)
    assert [len(e.question) for e in ds.examples] == [len(long_question), 2]


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.mkdir(), "is a folder"),
    (lambda p: __import__("os").mkfifo(p), "not a regular file"),
])
def test_dataset_paths_that_are_not_files_are_refused(tmp_path, make, expected):
    path = tmp_path / "data.jsonl"
    make(path)
    with pytest.raises(UserError, match=expected):
        load_dataset(str(path))


@needs_builtin
def test_ctrl_c_while_the_demo_loads_its_model_is_one_line(tmp_path, builtin_folder):
    import os
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "probeheat.demo", "--limit", "2", "--root",
                             str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ})
    first = proc.stderr.readline()  # "loading smollm2-135m-instruct ...": the model loads now
    assert first.startswith("loading"), first
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(
        "probeheat demo: interrupted")
