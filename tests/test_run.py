"""`probeheat run` end to end: real models, real bundles, resume after SIGKILL, ranks, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, needs_builtin

from probeheat.bundle import open_run, verify_bundle
from probeheat.cli import main
from probeheat.run.positions import BUILTIN_POSITIONS

CLI = [sys.executable, "-m", "probeheat.cli"]


def run_cli(*args: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, "run", *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO, env={**os.environ, **(env or {})})


def bundle_content(path: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """What a run holds, independent of shard layout and run id."""
    run = open_run(path)
    keep = ("index", "id", "answer", "correct", "exact_span", "positions", "missing")
    records = [{k: r[k] for k in keep} for r in run.records()]
    layers = {f"resid.{k}": run.read_layer(k)[0] for k in run.layers}
    return records, layers


@pytest.fixture(scope="module")
def builtin_run(tmp_path_factory, builtin_folder) -> Path:
    out = tmp_path_factory.mktemp("run") / "smollm2"
    code = main(["run", "--limit", "12", "--seed", "3", "--max-new-tokens", "24", "--batch-size", "6",
                 "--out", str(out), "--quiet", "--threads", "2"])
    assert code == 0
    return out


@needs_builtin
def test_builtin_model_on_world_facts(builtin_run):
    assert verify_bundle(builtin_run) == []
    run = open_run(builtin_run)
    records = run.records()
    assert len(records) == 12 == run.n_examples
    assert run.positions == list(BUILTIN_POSITIONS)
    assert run.layers == list(range(31)) and run.hidden_size == 576
    assert run.meta["model"]["model_id"] == "smollm2-135m-instruct"
    assert run.meta["dataset"]["name"] == "world-facts" and run.meta["dataset"]["license"]
    for record in records:
        assert set(record["positions"]) | set(record["missing"]) == set(BUILTIN_POSITIONS)
        assert not set(record["positions"]) & set(record["missing"])
        assert record["prompt"].count("<|im_start|>user") == 1
        if record["correct"]:
            assert record["matched_alias"] and record["exact_span"] is not None
    x, mask = run.read_layer(12)
    assert x.shape == (12, 15, 576)
    present = mask.sum()
    assert present > 0 and np.abs(x[mask]).sum(axis=-1).min() > 0, "captured rows are non-zero"
    assert np.all(x[~mask] == 0)


@needs_builtin
def test_exact_answer_positions_point_at_the_answer_tokens(builtin_run, builtin_folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(builtin_folder)
    for record in open_run(builtin_run).records():
        if not record["correct"]:
            continue
        ids = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
        assert len(ids) == record["prompt_len"]
        s, e = record["exact_span"]
        first = record["positions"]["exact_answer_first"] - record["prompt_len"]
        last = record["positions"]["exact_answer_last"] - record["prompt_len"]
        assert (first, last) == (s, e)


def test_user_jsonl_file_works_the_same_way(tiny_model_folder, tmp_path):
    data = tmp_path / "qa.jsonl"
    rows = [{"question": "What is the capital of France?", "answers": ["Paris"]},
            {"question": "What is the capital of Italy?", "answers": "Rome|Roma"},
            {"question": "", "answers": ["x"]},  # bad row: skipped and counted
            {"question": "Largest planet?", "answers": ["Jupiter"]}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "run"
    result = run_cli("--model", str(tiny_model_folder), "--dataset", str(data), "--out", str(out),
                     "--max-new-tokens", "6", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "skipped 1 bad dataset rows" in result.stderr
    run = open_run(out)
    assert [r["question"] for r in run.records()] == sorted(
        [r["question"] for r in rows if r["question"]], key=[r["question"] for r in run.records()].index)
    assert {tuple(r["answers"]) for r in run.records()} >= {("Rome", "Roma")}
    assert run.meta["dataset"]["skipped"] and verify_bundle(out) == []


def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_model_folder, tmp_path):
    args = ["--model", str(tiny_model_folder), "--limit", "40", "--max-new-tokens", "12",
            "--batch-size", "4", "--shard-size", "4", "--threads", "1"]
    reference = tmp_path / "reference"
    assert run_cli(*args, "--out", str(reference), "--quiet").returncode == 0

    out = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, "run", *args, "--out", str(out), "--quiet"], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = out.with_name("killed.partial") / "shards"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(partial.glob("*.json"))) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and len(list(partial.glob("*.json"))) >= 3

    refused = run_cli(*args, "--out", str(out))
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = run_cli(*args, "--out", str(out), "--resume", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    got_records, got_layers = bundle_content(out)
    ref_records, ref_layers = bundle_content(reference)
    assert got_records == ref_records
    for name in ref_layers:
        np.testing.assert_array_equal(got_layers[name], ref_layers[name])
    again = run_cli(*args, "--out", str(out), "--resume")
    assert again.returncode == 0 and "already complete" in again.stderr


def test_two_gloo_ranks_give_the_same_bundle_as_one_process(tiny_model_folder, tmp_path):
    args = ["--model", str(tiny_model_folder), "--limit", "10", "--max-new-tokens", "8",
            "--batch-size", "3", "--threads", "1", "--quiet"]
    single = tmp_path / "single"
    assert run_cli(*args, "--out", str(single)).returncode == 0
    ranks = tmp_path / "ranks"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port",
         str(29500 + os.getpid() % 1000), "-m", "probeheat.cli", "run", *args, "--out", str(ranks)],
        capture_output=True, text=True, timeout=600, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert verify_bundle(ranks) == []
    shards = sorted(p.name for p in (ranks / "shards").glob("*.json"))
    assert any("-r000-" in s for s in shards) and any("-r001-" in s for s in shards)
    got_records, got_layers = bundle_content(ranks)
    ref_records, ref_layers = bundle_content(single)
    assert got_records == ref_records
    for name in ref_layers:
        np.testing.assert_allclose(got_layers[name], ref_layers[name], atol=1e-3)


@pytest.mark.parametrize("args, expected", [
    (["--dataset", "missing.jsonl"], "missing.jsonl"),
    (["--positions", "last_q,exact_answer_middle"], "exact_answer_middle"),
    (["--model", "/no/such/model"], "/no/such/model"),
    (["--device", "cuda"], "no GPU"),
    # refused before the model loads (no "loading ..." line: minutes on a large model)
    (["--few-shot", "9"], "--few-shot"),
    (["--template", "Question: what?"], "no {question} placeholder"),
    (["--answers-from", "/no/such/run"], "/no/such/run"),
    (["--answers-from", str(REPO / "artifacts" / "samples" / "run-synthetic")],
     "used another copy of the dataset"),
])
def test_bad_input_is_one_line(args, expected, tmp_path):
    if "--device" in args:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is present")
    result = run_cli("--out", str(tmp_path / "r"), "--limit", "2", *args)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("probeheat run:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    if args[0] in ("--few-shot", "--template", "--answers-from"):
        assert "loading" not in result.stderr, result.stderr


def test_out_holding_a_different_run_is_refused(tiny_model_folder, tmp_path):
    args = ["--model", str(tiny_model_folder), "--limit", "2", "--max-new-tokens", "4", "--quiet"]
    out = tmp_path / "run"
    assert run_cli(*args, "--out", str(out)).returncode == 0
    before = (out / "manifest.json").read_bytes()
    other = run_cli(*args, "--seed", "7", "--out", str(out))
    assert other.returncode == 2 and "--overwrite" in other.stderr
    resumed_other = run_cli(*args, "--seed", "7", "--out", str(out), "--resume")
    assert resumed_other.returncode == 2
    assert (out / "manifest.json").read_bytes() == before
    assert run_cli(*args, "--seed", "7", "--out", str(out), "--overwrite").returncode == 0
    assert (out / "manifest.json").read_bytes() != before


def test_extractor_model_and_extra_sites(tiny_model_folder, tmp_path):
    out = tmp_path / "run"
    result = run_cli("--model", str(tiny_model_folder), "--limit", "6", "--max-new-tokens", "6",
                     "--extractor-model", "self", "--sites", "resid,mlp,attn", "--capture",
                     "reforward", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr
    assert verify_bundle(out) == []
    run = open_run(out)
    assert run.sites == {"resid": [0, 1, 2], "mlp": [1, 2], "attn": [1, 2]}
    assert run.meta["exact_answer_policy"] == "extractor"
    wrong = [r for r in run.records() if not r["correct"]]
    assert wrong and all(r["exact_answer_source"] == "extractor" for r in wrong)
    for r in wrong:  # a random model's extraction is rarely found in its answer: say why
        assert r["exact_span"] is not None or "exact_answer_last" in r["missing"]
    mlp, mask = run.read_layer(2, site="mlp")
    resid_1, _ = run.read_layer(1)
    resid_2, _ = run.read_layer(2)
    assert mlp.shape == resid_2.shape and np.abs(mlp[mask]).sum() > 0
    assert not np.allclose(mlp, resid_2 - resid_1), "mlp alone is not the whole layer update"


@needs_builtin
def test_a_gguf_file_as_the_model(tmp_path):
    import importlib.util

    from probeheat.models.builtin import BUILTIN_MODELS

    spec = BUILTIN_MODELS["smollm2-135m-instruct"]
    folder = Path(list(importlib.util.find_spec(spec.module).submodule_search_locations)[0])
    out = tmp_path / "run"
    result = run_cli("--model", str(folder / spec.filename), "--limit", "2", "--max-new-tokens",
                     "8", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-2000:]
    run = open_run(out)
    assert run.meta["model"]["source"] == "gguf" and run.meta["model"]["revision"]
    assert run.hidden_size == 576 and verify_bundle(out) == []


def test_generalize_refuses_real_runs_of_different_models(tiny_model_folder, tmp_path):
    """Real runs record their model as model.model_id; two different models never mix."""
    import shutil

    other_model = tmp_path / "other-tiny"
    shutil.copytree(tiny_model_folder, other_model)
    args = ["--limit", "4", "--max-new-tokens", "4", "--quiet"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert run_cli("--model", str(tiny_model_folder), "--out", str(a), *args).returncode == 0
    assert run_cli("--model", str(other_model), "--out", str(b), *args).returncode == 0
    result = subprocess.run([*CLI, "generalize", str(a), str(b), "--out", str(tmp_path / "g")],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 2, result.stderr
    assert "differs" in result.stderr and str(other_model) in result.stderr
    assert "Traceback" not in result.stderr


def test_errors_name_the_flags_that_exist(tiny_model_folder):
    from probeheat.errors import UserError
    from probeheat.models import load_model
    from probeheat.probe.settings import probe_settings
    from probeheat.run.capture import CaptureEngine

    with pytest.raises(UserError) as err:
        CaptureEngine(load_model(str(tiny_model_folder), device="cpu"), mode="fast")
    assert err.value.where == "--capture"
    with pytest.raises(UserError) as err:
        probe_settings(preset="fast")
    assert err.value.where == "--paper"


def test_a_template_typed_in_a_shell_means_its_escapes():
    from probeheat.cli import build_parser
    from probeheat.commands.run import template_arg

    args = build_parser("run").parse_args(["run", "--out", "r", "--template",
                                           r"Q: {question}\nA:"])
    assert args.template == "Q: {question}\nA:"  # a newline, not backslash + n
    assert template_arg(r"a\tb\\nc\x") == "a\tb\\nc\\x"  # \\ is one backslash; others stay
    assert build_parser("run").parse_args(["run", "--out", "r"]).template == "auto"


def test_answers_from_a_larger_run_reuses_its_first_answers(tiny_model_folder, tmp_path):
    args = ["--model", str(tiny_model_folder), "--max-new-tokens", "4", "--quiet",
            "--no-baselines"]
    source = tmp_path / "source"
    assert run_cli(*args, "--limit", "6", "--out", str(source)).returncode == 0
    subset = tmp_path / "subset"
    result = run_cli(*args, "--limit", "3", "--answers-from", str(source), "--exact-answer",
                     "symmetric", "--out", str(subset))
    assert result.returncode == 0, result.stderr
    mine, theirs = open_run(subset).records(), open_run(source).records()[:3]
    assert [(r["id"], r["generated_ids"]) for r in mine] == \
        [(r["id"], r["generated_ids"]) for r in theirs]
    assert open_run(subset).meta["generation"]["answers_from"]["content_hash"] == \
        open_run(source).content_hash
    larger = run_cli(*args, "--limit", "9", "--answers-from", str(source), "--out",
                     str(tmp_path / "larger"))
    assert larger.returncode == 2 and "answered 6 questions, this run asks 9" in larger.stderr
    assert "loading" not in larger.stderr  # refused before the model loads
