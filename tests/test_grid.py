"""Run bundle -> grid bundle: labels, splits, stored scores, determinism, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from probeheat.bundle import RunWriter, open_bundle, open_grid, tensor_name
from probeheat.errors import UserError
from probeheat.probe.generalize import generalize
from probeheat.probe.grid import make_grid
from probeheat.probe.metrics import roc_auc
from probeheat.probe.transfer import make_transfer_grid
from probeheat.synthetic import write_synthetic_run

POSITIONS = ["last_q", "exact_answer_last", "-1"]


def write_run(out, correct, *, n_layers=3, hidden=24, positions=POSITIONS, mask=None,
              model="tiny", seed=0, signal=(0.0, 0.6, 0.2)):
    """A run whose position k carries signal[k] along one direction (sign = correctness)."""
    rng = np.random.default_rng(seed)
    correct = np.asarray(correct, dtype=bool)
    n, P = correct.size, len(positions)
    mask = np.ones((n, P), dtype=bool) if mask is None else mask
    direction = np.ones(hidden) / np.sqrt(hidden)
    meta = {"fingerprint": f"test-{seed}-{n}-{hidden}", "model": {"model_id": model},
            "dataset": {"name": f"set{seed}"}, "positions": positions,
            "layers": list(range(n_layers)), "sites": {"resid": list(range(n_layers))},
            "hidden_size": hidden, "dtype": "float32"}
    writer = RunWriter(out, meta)
    records = [{"index": i, "id": f"q{seed}-{i}", "correct": bool(correct[i]),
                "positions": {p: k for k, p in enumerate(positions) if mask[i, k]},
                "missing": {p: "no exact answer" for k, p in enumerate(positions)
                            if not mask[i, k]}} for i in range(n)]
    sign = np.where(correct, -1.0, 1.0)
    tensors = {}
    for layer in range(n_layers):
        x = rng.standard_normal((n, P, hidden))
        x += sign[:, None, None] * np.asarray(signal)[None, :, None] * direction * (layer + 1)
        tensors[tensor_name("resid", layer)] = (x * mask[:, :, None]).astype(np.float32)
    writer.add_shard(records, tensors, mask)
    return writer.finalize()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    rng = np.random.default_rng(0)
    return write_run(tmp_path_factory.mktemp("runs") / "run", rng.random(120) < 0.6)


def test_grid_holds_error_probe_results(run, tmp_path):
    out = make_grid(run, tmp_path / "grid", seeds=(0, 1), progress=False)
    grid = open_grid(out)
    assert grid.layers == [0, 1, 2] and grid.positions == POSITIONS
    assert grid.meta["label"] == "incorrect"
    correct = np.array([r["correct"] for r in open_bundle(run).records()])
    assert np.array_equal(grid.tensor("labels"), (~correct).astype(np.int8))
    auc = grid.metric("auc")
    assert auc.shape == (3, 3) and np.isfinite(auc).all()
    # the planted error signal sits at exact_answer_last and grows with depth
    assert grid.best_cell()[:2] == (2, "exact_answer_last") and auc[2, 1] > 0.9
    assert auc[0, 0] < 0.8  # position without signal stays near chance
    lo, hi = grid.interval("auc")
    assert (lo <= auc).all() and (auc <= hi).all()
    by_seed = grid.tensor("auc_by_seed")
    assert by_seed.shape == (2, 3, 3)
    np.testing.assert_allclose(auc, by_seed.mean(0))
    np.testing.assert_allclose(grid.tensor("auc_std"), by_seed.std(0))


def test_stored_scores_reproduce_each_auc(run, tmp_path):
    grid = open_grid(make_grid(run, tmp_path / "grid", progress=False))
    for layer in grid.layers:
        for position in grid.positions:
            rows, scores, labels = grid.scores(layer, position)
            i, j = grid.layers.index(layer), grid.positions.index(position)
            assert roc_auc(labels, scores) == grid.metric("auc")[i, j]
            acc = np.mean((scores > 0) == (labels == 1))
            assert acc == pytest.approx(grid.metric("accuracy")[i, j])


def test_split_is_stratified_and_recorded(run, tmp_path):
    grid = open_grid(make_grid(run, tmp_path / "grid", test_fraction=0.25, progress=False))
    split = grid.meta["splits"][0]
    ids = [r["id"] for r in open_bundle(run).records()]
    test_rows = grid.tensor("test_rows")[0]
    train_rows = grid.tensor("train_rows")[0]
    assert split["test_ids"] == [ids[k] for k in test_rows if k >= 0]
    assert split["train_ids"] == [ids[k] for k in train_rows if k >= 0]
    assert not set(split["test_ids"]) & set(split["train_ids"])
    labels = grid.tensor("labels")
    assert abs(labels[test_rows].mean() - labels.mean()) < 0.03
    counts = grid.counts()
    assert (counts["n_test"] == test_rows.size).all()
    assert (counts["n_test_pos"] == labels[test_rows].sum()).all()


def test_provenance_and_settings(run, tmp_path):
    grid = open_grid(make_grid(run, tmp_path / "grid", preset="paper", progress=False))
    source = open_bundle(run)
    assert grid.run_ref["id"] == source.id
    assert grid.run_ref["content_hash"] == source.content_hash
    probe = grid.meta["probe"]
    assert probe["C"] == 1.0 and probe["standardize"] is False and probe["preset"] == "paper"
    assert grid.meta["versions"]["probeheat"]


def test_same_inputs_give_byte_identical_tensors(run, tmp_path):
    a = make_grid(run, tmp_path / "a", seeds=(3,), progress=False)
    b = make_grid(run, tmp_path / "b", seeds=(3,), progress=False)
    assert (a / "grid.safetensors").read_bytes() == (b / "grid.safetensors").read_bytes()
    c = make_grid(run, tmp_path / "c", seeds=(4,), progress=False)
    assert (a / "grid.safetensors").read_bytes() != (c / "grid.safetensors").read_bytes()


def test_cells_without_both_classes_are_nan_with_reason(tmp_path):
    rng = np.random.default_rng(1)
    correct = rng.random(80) < 0.5
    mask = np.ones((80, 3), dtype=bool)
    mask[~correct, 1] = False  # exact answer found only for correct answers
    out = make_grid(write_run(tmp_path / "run", correct, mask=mask), tmp_path / "grid",
                    progress=False)
    grid = open_grid(out)
    auc = grid.metric("auc")
    assert np.isnan(auc[:, 1]).all() and np.isfinite(auc[:, [0, 2]]).all()
    reasons = grid.reasons()
    assert set(reasons) == {(layer, "exact_answer_last") for layer in grid.layers}
    assert "too few training examples per class (0 incorrect" in reasons[(0, "exact_answer_last")]
    assert grid.best_cell() is not None


def test_layer_and_position_selection(run, tmp_path):
    grid = open_grid(make_grid(run, tmp_path / "grid", layers=[2, 0], positions=["-1"],
                               progress=False))
    assert grid.layers == [2, 0] and grid.positions == ["-1"]
    with pytest.raises(UserError, match="--layers.*no resid layer"):
        make_grid(run, tmp_path / "x", layers=[7], progress=False)
    with pytest.raises(UserError, match="--positions.*'first_answer'"):
        make_grid(run, tmp_path / "x", positions=["first_answer"], progress=False)


def test_bad_input_is_a_user_error(run, tmp_path):
    grid = make_grid(run, tmp_path / "grid", progress=False)
    with pytest.raises(UserError, match="not a run bundle"):
        make_grid(grid, tmp_path / "again", progress=False)
    with pytest.raises(UserError):
        make_grid(tmp_path / "nowhere", tmp_path / "x", progress=False)
    all_right = write_run(tmp_path / "right", np.ones(30, dtype=bool))
    with pytest.raises(UserError, match="all 30 answers are correct"):
        make_grid(all_right, tmp_path / "x", progress=False)
    with pytest.raises(UserError, match="unknown preset"):
        make_grid(run, tmp_path / "x", preset="fast", progress=False)
    with pytest.raises(UserError, match="test-fraction"):
        make_grid(run, tmp_path / "x", test_fraction=1.5, progress=False)


def test_progress_can_be_silenced(run, tmp_path, capfd):
    make_grid(run, tmp_path / "grid", progress=False)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_transfer_grid_scores_the_other_run(run, tmp_path):
    rng = np.random.default_rng(5)
    other = write_run(tmp_path / "other", rng.random(70) < 0.5, seed=5)
    grid = open_grid(make_transfer_grid(run, other, tmp_path / "t", progress=False))
    assert grid.run_ref["id"] == open_bundle(other).id
    assert grid.meta["train_run"]["id"] == open_bundle(run).id
    assert grid.metric("auc")[2, 1] > 0.9  # same planted direction in both runs
    rows, scores, labels = grid.scores(2, "exact_answer_last")
    assert rows.size == 70
    wider = write_run(tmp_path / "wider", rng.random(40) < 0.5, hidden=32, seed=6)
    with pytest.raises(UserError, match="hidden size 32"):
        make_transfer_grid(run, wider, tmp_path / "x", progress=False)
    renamed = write_run(tmp_path / "renamed", rng.random(40) < 0.5, seed=7,
                        positions=["last_q", "exact_answer_first", "-1"])
    with pytest.raises(UserError, match="positions"):
        make_transfer_grid(run, renamed, tmp_path / "x", progress=False)
    other_model = write_run(tmp_path / "m", rng.random(40) < 0.5, seed=8, model="other")
    with pytest.raises(UserError, match="model"):
        make_transfer_grid(run, other_model, tmp_path / "x", progress=False)


def test_generalization_matrix(run, tmp_path):
    rng = np.random.default_rng(9)
    other = write_run(tmp_path / "other", rng.random(90) < 0.5, seed=9)
    out = generalize([run, other], tmp_path / "gen", progress=False)
    gen = open_bundle(out)
    matrix = gen.matrix()
    assert matrix.shape == (2, 2) and (matrix > 0.9).all()
    meta = json.loads((out / "generalization.json").read_text())
    assert [r["name"] for r in meta["train_runs"]] == ["set0", "set9"]
    best = open_grid(make_grid(run, tmp_path / "g", progress=False)).best_cell()
    assert (meta["train_runs"][0]["layer"], meta["train_runs"][0]["position"]) == best[:2]
    assert matrix[0, 0] == pytest.approx(best[2])
    with pytest.raises(UserError, match="at least 2"):
        generalize([run], tmp_path / "x", progress=False)


def test_synthetic_run_end_to_end(tmp_path):
    run = write_synthetic_run(tmp_path / "synth", n=100, n_layers=4, hidden=16)
    grid = open_grid(make_grid(run, tmp_path / "grid", progress=False))
    assert grid.metric("auc").shape == (4, 15)
    assert grid.best_cell()[2] > 0.7


def test_existing_destination_is_refused_before_fitting(run, tmp_path, monkeypatch):
    out = make_grid(run, tmp_path / "grid", progress=False)
    import probeheat.probe.grid as grid_module

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted before checking the destination")

    monkeypatch.setattr(grid_module, "probe_run", no_fitting)
    with pytest.raises(UserError, match="already exists"):
        make_grid(run, out, progress=False)


def test_the_best_cell_of_ece_is_the_lowest():
    from probeheat.bundle.grid import GridValues

    ece = np.array([[0.10, 0.30], [0.02, np.nan]])
    auc = np.array([[0.60, 0.90], [0.70, np.nan]])
    values = GridValues([0, 1], ["a", "b"], ["auc", "ece"], {"auc": auc, "ece": ece})
    best_ece, best_auc = values.best_cell("ece"), values.best_cell("auc")
    assert (best_ece.layer, best_ece.position) == (1, "a")
    assert (best_auc.layer, best_auc.position) == (0, "b")
