"""Sampled answers, the study's error types, probes for types and answer selection."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO

from probeheat.bundle import open_grid, open_run, open_selection, verify_bundle
from probeheat.data.error_types import (
    NO_ANSWER,
    Sample,
    cluster_wrong,
    error_types,
    has_type,
    sample_counts,
)
from probeheat.errors import UserError
from probeheat.probe.grid import make_grid, make_type_grids
from probeheat.probe.select import bootstrap_interval, choose, make_selection, mcnemar_p
from probeheat.probe.settings import probe_settings
from probeheat.run.sampling import Sampling, choose_tokens, generators, sample_answers
from probeheat.synthetic import write_synthetic_run

CLI = [sys.executable, "-m", "probeheat.cli"]


def cli(*args, env=None, timeout=600):
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout, env={**os.environ, **(env or {})})


# --- the error-type rules (N = 10: H = 5, T = 3, S = 1) ---------------------------------

def samples(correct: int, wrong: list[str], refusals: int = 0, invalid: int = 0):
    out = [Sample(True, "Paris")] * correct + [Sample(False, w) for w in wrong]
    out += [Sample(False, None, refused=True)] * refusals + [Sample(False, None)] * invalid
    return out


def types_of(*args, **kwargs) -> list[str]:
    return error_types(sample_counts(samples(*args, **kwargs)))


@pytest.mark.parametrize("case, expected", [
    ((10, []), ["correct-always"]),
    ((6, ["Lyon", "Nice", "Lille", "Metz"]), ["correct-mostly", "many-with-correct"]),
    ((5, ["Lyon"] * 5), ["correct-mostly", "wrong-mostly", "competing"]),  # independent
    ((0, ["Lyon"] * 10), ["wrong-always"]),
    ((2, ["Lyon"] * 5 + ["Nice"] * 3), ["wrong-mostly", "many-with-correct"]),
    ((0, ["Lyon", "Nice", "Lille", "Metz", "Caen", "Pau", "Albi", "Agen", "Dax", "Sète"]),
     ["many-never-correct"]),
    ((0, [], 6, 4), ["refuses"]),
    ((4, ["Lyon"] * 4, 0, 2), ["competing"]),  # C = W = 4 > S, below H
])
def test_each_type_on_a_hand_built_sample_set(case, expected):
    assert len(samples(*case)) == 10
    assert types_of(*case) == expected


def test_the_boundaries_of_the_rules():
    # many-never-correct needs T = 3 distinct wrong answers; 2 is not enough
    assert "many-never-correct" not in types_of(0, ["Lyon"] * 4 + ["Nice"] * 4, invalid=2)
    assert "many-never-correct" in types_of(0, ["Lyon", "Nice", "Lille"], invalid=7)
    # with a correct answer, T - 1 = 2 distinct wrong answers are enough (E2)
    assert "many-with-correct" in types_of(1, ["Lyon", "Nice"], invalid=7)
    assert "many-with-correct" not in types_of(1, ["Lyon"], invalid=8)
    # competing is strict: both groups need more than S = 1 sample
    assert "competing" not in types_of(1, ["Lyon"], invalid=8)
    assert "competing" in types_of(2, ["Lyon"] * 2, invalid=6)
    assert "competing" not in types_of(4, ["Lyon"] * 2, invalid=4)  # |C - W| = 2 > S
    # wrong-* need W >= H = 5
    assert "wrong-always" not in types_of(0, ["Lyon"] * 4, invalid=6)
    # refuses: NO ANSWER tied for largest still counts, but must beat C
    assert types_of(0, ["Lyon"] * 3, refusals=3, invalid=4)[:1] == ["refuses"]
    assert "refuses" not in types_of(3, [], refusals=3, invalid=4)
    assert "wrong-always" not in types_of(0, [], refusals=6, invalid=4)  # refusal is not C1


def test_wrong_answers_cluster_as_the_study_clusters_them():
    # exact key +1; otherwise every key that contains it or is contained in it +1
    assert cluster_wrong(["lyon", "lyon", "nice"]) == {"lyon": 2, "nice": 1}
    assert cluster_wrong(["new york", "york", "new york city"]) == {"new york": 3}
    assert cluster_wrong(["york", "new", "new york"]) == {"york": 2, "new": 2}  # both keys
    counts = sample_counts([Sample(False, "The Lyon!"), Sample(False, "lyon"),
                            Sample(True, "Paris"), Sample(False, None)])
    assert counts["wrong_answers"] == {"lyon": 2} and counts["correct"] == 1
    assert counts["largest_wrong"] == 2 and counts["distinct_wrong"] == 1
    refused = sample_counts([Sample(False, None, refused=True)] * 2)
    assert refused["wrong_answers"] == {NO_ANSWER: 2} and refused["no_answer"] == 2


def test_merged_type_names():
    assert has_type(["wrong-mostly"], "consistently-wrong")
    assert not has_type(["correct-mostly"], "consistently-wrong")
    assert has_type(["competing"], "competing")


# --- drawing tokens ---------------------------------------------------------------------

def test_tokens_are_drawn_by_inverse_transform_over_the_kept_tokens():
    logits = torch.log(torch.tensor([[0.2, 0.5, 0.3]])).repeat(1000, 1)
    u = (torch.arange(1000) + 0.5) / 1000
    counts = lambda spec: np.bincount(choose_tokens(logits, u, spec).numpy(), minlength=3)  # noqa: E731
    assert counts(Sampling(2, top_k=0)).tolist() == [200, 500, 300]
    assert counts(Sampling(2, top_k=2)).tolist() == [0, 625, 375]
    assert counts(Sampling(2, top_k=0, top_p=0.6)).tolist() == [0, 625, 375]
    assert counts(Sampling(2, top_k=0, top_p=0.5)).tolist() == [0, 1000, 0]
    squared = np.array([0.04, 0.25, 0.09]) / 0.38
    got = counts(Sampling(2, temperature=0.5, top_k=0)) / 1000
    np.testing.assert_allclose(got, squared, atol=2e-3)


@pytest.fixture(scope="module")
def engine(tiny_model_folder):
    from probeheat.models import load_model
    from probeheat.run.capture import CaptureEngine

    loaded = load_model(str(tiny_model_folder), device="cpu", dtype="float32")
    return CaptureEngine(loaded, mode="reforward", max_new_tokens=10)


def test_a_sample_does_not_depend_on_its_batch(engine):
    tok = engine.tokenizer
    prompts = [tok.encode(t) for t in ("What is the capital of Peru?", "Name a river.",
                                       "Which continent is Kenya in, and why do you think so?")]
    spec = Sampling(3, top_k=0)
    alone = sample_answers(engine, [prompts[0]], generators(7, ["a"], 3), spec)
    together = sample_answers(engine, prompts, generators(7, ["a", "b", "c"], 3), spec)
    reordered = sample_answers(engine, [prompts[2], prompts[0]], generators(7, ["c", "a"], 3),
                               spec)
    assert together.generated_ids[:3] == alone.generated_ids
    assert reordered.generated_ids[3:] == alone.generated_ids
    assert together.generated_ids[6:] == reordered.generated_ids[:3]
    # a question's samples differ from each other, and another seed gives others
    assert len({tuple(g) for g in alone.generated_ids}) > 1
    other = sample_answers(engine, [prompts[0]], generators(8, ["a"], 3), spec)
    assert other.generated_ids != alone.generated_ids


def test_sample_states_by_reforward_equal_a_single_sequence_forward(engine):
    tok = engine.tokenizer
    prompts = [tok.encode("What is the capital of Peru?"), tok.encode("Name a river.")]
    batch = sample_answers(engine, prompts, generators(0, ["a", "b"], 2), Sampling(2))
    last = [{"-1": len(p) + len(g) - 1} for p, g in zip(batch.prompt_ids, batch.generated_ids,
                                                         strict=True)]
    acts, mask = batch.gather(last, ["-1"], sites=("resid",))
    assert mask.all() and acts["resid"].shape[:3] == (4, engine.n_layers + 1, 1)
    seq = batch.sequences[3]
    with torch.inference_mode():
        out = engine.model(torch.tensor([seq]), output_hidden_states=True)
    np.testing.assert_allclose(acts["resid"][3, 1, 0], out.hidden_states[1][0, -1].numpy(),
                               atol=1e-5)


# --- sampling in `run` ------------------------------------------------------------------

def sampled_content(path):
    run = open_run(path)
    keep = ("answer", "generated_ids", "correct", "exact_span", "positions")
    recs = [(r["id"], [{k: s[k] for k in keep} for s in r["samples"]], r["error_type"])
            for r in run.records()]
    return recs, {k: run.read_samples(k)[0] for k in run.samples["layers"]}


def test_samples_are_the_same_for_any_batch_size_and_after_a_kill(tiny_model_folder, tmp_path):
    args = ["run", "--model", tiny_model_folder, "--limit", "12", "--max-new-tokens", "8",
            "--samples", "3", "--top-k", "0", "--threads", "1", "--quiet", "--no-baselines",
            "--shard-size", "4"]
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(*args, "--batch-size", "4", "--out", a).returncode == 0
    killed = cli(*args, "--batch-size", "3", "--out", b,
                 env={"PROBEHEAT_FAULT": "shard-done:2:kill"})
    assert killed.returncode != 0 and not b.exists()
    resumed = cli(*args, "--batch-size", "3", "--out", b, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert verify_bundle(a) == [] and verify_bundle(b) == []
    (ra, xa), (rb, xb) = sampled_content(a), sampled_content(b)
    assert ra == rb
    for layer in xa:
        np.testing.assert_allclose(xa[layer], xb[layer], atol=2e-3)
    run = open_run(a)
    assert run.samples["k"] == 3 and run.samples["positions"] == ["exact_answer_last", "-1"]
    x, mask = run.read_samples(run.samples["layers"][-1])
    assert x.shape == (12, 3, 2, 32) and mask[:, :, 1].all()
    assert (np.abs(x[:, :, 1]).sum(-1) > 0).all()


@pytest.mark.parametrize("args, flag", [
    (["--samples", "1"], "--samples"), (["--samples", "-2"], "--samples"),
    (["--samples", "4", "--temperature", "0"], "--temperature"),
    (["--samples", "4", "--top-p", "1.5"], "--top-p"),
    (["--samples", "4", "--sample-positions", "middle"], "--sample-positions"),
    (["--samples", "4", "--sample-layers", "4::"], "--sample-layers"),
])
def test_bad_sampling_options_are_one_line_before_any_model_loads(args, flag, tmp_path):
    result = cli("run", "--model", tmp_path / "no-such-model", "--out", tmp_path / "r", *args)
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.returncode == 2 and len(lines) == 1 and flag in lines[0], result.stderr
    assert "no-such-model" not in lines[0]


# --- probes for error types ---------------------------------------------------------------

def test_error_type_targets(tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=200, n_layers=3, hidden=6, samples=10)
    records = open_run(run).records()
    grid = make_grid(run, tmp_path / "g", progress=False, target="error-type:many-answers",
                     controls=False)
    g = open_grid(grid)
    y = np.array([has_type(r["error_type"]["types"], "many-answers") for r in records])
    assert g.meta["target"] == "error-type:many-answers"
    assert "many-answers" in g.meta["label"] and (g.tensor("labels") == y).all()
    assert 0 < y.mean() < 1
    written, skipped = make_type_grids(run, tmp_path / "all", progress=False,
                                       settings=probe_settings(target="error-type",
                                                               controls=False))
    assert written and all(verify_bundle(p) == [] for p in written)
    assert {p.name for p in written} | set(skipped) == {
        "refuses", "consistently-correct", "consistently-wrong", "competing", "many-answers"}
    assert "refuses" in skipped  # the synthetic samples never refuse


def test_error_type_targets_need_samples(tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=60, n_layers=2, hidden=4)
    with pytest.raises(UserError, match="--samples"):
        make_grid(run, tmp_path / "g", progress=False, target="error-type:competing")
    result = cli("probe", run, "--out", tmp_path / "g2", "--target", "error-type:middling")
    assert result.returncode == 2 and "unknown error type" in result.stderr
    for _ in range(2):  # refused, and no empty --out left behind to refuse the next try
        result = cli("probe", run, "--out", tmp_path / "g3", "--target", "error-type")
        assert result.returncode == 2 and "needs sampled answers" in result.stderr
        assert not (tmp_path / "g3").exists()


# --- answer selection ---------------------------------------------------------------------

def test_mcnemar_and_bootstrap_arithmetic():
    a = np.array([1] * 10 + [0] * 10)
    b = np.array([0] * 10 + [0] * 10)
    p, better, worse = mcnemar_p(a, b)
    assert (better, worse) == (10, 0) and p == pytest.approx(2 / 2 ** 10)
    assert mcnemar_p(a, a)[0] == 1.0
    lo, hi = bootstrap_interval(a.astype(float), 0)
    assert lo < 0.5 < hi and 0.2 < lo and hi < 0.8


def test_choice_takes_the_lowest_error_score_among_scorable_samples():
    scores = np.array([[0.5, -1.0, -1.0, np.nan], [np.nan, np.nan, np.nan, np.nan]])
    probe, rand, none = choose(scores, np.random.default_rng(0))
    assert probe.tolist() == [1, 0] and none == 1
    assert rand[0] in (0, 1, 2)


@pytest.mark.parametrize("signal", [3.0, 0.0])
def test_selection_on_a_planted_signal(signal, tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=400, n_layers=4, hidden=8, samples=8,
                              signal=signal)
    grid = make_grid(run, tmp_path / "g", progress=False, controls=False)
    path = make_selection(run, grid, tmp_path / "sel")
    assert verify_bundle(path) == []
    table = open_selection(path).table
    greedy, probe = table["greedy"], table["probe"]
    if signal:
        assert probe["lo"] > greedy["hi"] and probe["p_vs_greedy"] < 1e-6
    else:  # no signal: the probe picks as blindly as chance, within the interval
        assert greedy["lo"] <= probe["accuracy"] <= greedy["hi"]
        assert abs(probe["accuracy"] - table["random"]["accuracy"]) < 0.15


def test_select_refuses_what_it_cannot_use(tmp_path):
    plain = write_synthetic_run(tmp_path / "plain", n=60, n_layers=2, hidden=4)
    sampled = write_synthetic_run(tmp_path / "sampled", n=60, n_layers=2, hidden=4, samples=4,
                                  seed=1)
    g_plain = make_grid(plain, tmp_path / "gp", progress=False, controls=False)
    g_sampled = make_grid(sampled, tmp_path / "gs", progress=False, controls=False)
    for args, expected in (([plain, "--grid", g_plain], "no sampled answers"),
                           ([sampled, "--grid", g_plain], "was made from run"),
                           ([sampled, "--grid", g_sampled, "--cell", "7"], "LAYER:POSITION"),
                           ([sampled, "--grid", g_sampled, "--cell", "9:-1"], "not a cell"),
                           ([sampled, "--grid", g_sampled, "--cell", "1:last_q"],
                            "samples were not captured")):
        result = cli("select", *args, "--out", tmp_path / "s")
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr
    good = cli("select", sampled, "--grid", g_sampled, "--out", tmp_path / "s")
    assert good.returncode == 0 and "McNemar" in good.stderr
    summary = json.loads(cli("inspect", tmp_path / "s", "--json").stdout)
    assert summary["kind"] == "selection" and "probe-selected" in summary["verdict"]


def test_selection_at_an_exact_answer_cell_of_a_study_rule_run_carries_a_caution(tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=200, n_layers=2, hidden=8, samples=4,
                              signal=3.0)
    grid = make_grid(run, tmp_path / "g", progress=False, controls=False)
    names = open_run(run).samples["positions"]
    exact = next(p for p in names if p.startswith("exact_answer"))
    other = next(p for p in names if not p.startswith("exact_answer"))
    cautious = open_selection(make_selection(run, grid, tmp_path / "a", cell=f"1:{exact}"))
    assert "study's exact-answer rule" in cautious.meta["caution"]
    plain = open_selection(make_selection(run, grid, tmp_path / "b", cell=f"1:{other}"))
    assert "caution" not in plain.meta
    assert verify_bundle(cautious.path) == []
