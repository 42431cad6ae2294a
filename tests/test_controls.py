"""Does a cell mean anything? Baselines, controls and paired tests, checked."""

from __future__ import annotations

import inspect
import json
import math

import numpy as np
import pytest
from hostile import cli

from probeheat.bundle import open_grid, open_run
from probeheat.errors import UserError
from probeheat.probe.grid import make_grid
from probeheat.probe.metrics import adjust_p, delong_paired, delong_unpaired, roc_auc
from probeheat.probe.splits import group_split, stratified_split
from probeheat.synthetic import write_synthetic_run


@pytest.fixture(scope="module")
def with_baselines(tmp_path_factory):
    root = tmp_path_factory.mktemp("b")
    run = write_synthetic_run(root / "run", n=240, n_layers=5, hidden=8, baselines=True)
    grid = make_grid(run, root / "grid", seeds=(0, 1), progress=False)
    return open_run(run), open_grid(grid)


# --- paired DeLong ------------------------------------------------------------------------

def delong_by_definition(y, a, b):
    """DeLong et al. (1988) written out with the Mann-Whitney kernel, O(n1 n0)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)

    def kernel(s):
        d = s[pos][:, None] - s[neg][None, :]
        return (d > 0) + 0.5 * (d == 0)

    ka, kb = kernel(a), kernel(b)
    v10 = np.stack([ka.mean(1), kb.mean(1)])  # per positive
    v01 = np.stack([ka.mean(0), kb.mean(0)])  # per negative
    s10, s01 = np.cov(v10), np.cov(v01)
    c = np.array([1.0, -1.0])
    var = c @ s10 @ c / pos.size + c @ s01 @ c / neg.size
    return ka.mean() - kb.mean(), math.sqrt(var)


def test_paired_delong_matches_its_definition_on_a_small_case():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1, 0, 1])
    a = np.array([0.9, 0.8, 0.3, 0.2, 0.4, 0.1, 0.5, 0.7, 0.3, 0.6])  # with a tie
    b = np.array([0.5, 0.9, 0.2, 0.4, 0.3, 0.6, 0.1, 0.2, 0.8, 0.7])
    diff, se, p = delong_paired(y, a, b)
    want_diff, want_se = delong_by_definition(y, a, b)
    assert diff == pytest.approx(want_diff, abs=1e-12) and se == pytest.approx(want_se, rel=1e-10)
    assert diff == pytest.approx(roc_auc(y, a) - roc_auc(y, b))
    z = abs(want_diff) / want_se
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)


def test_paired_standard_error_agrees_with_a_paired_bootstrap():
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.4).astype(int)
    shared = rng.normal(0, 1, n)  # the two scores are correlated, as two cells of a grid are
    a = 1.0 * y + shared + rng.normal(0, 0.7, n)
    b = 0.7 * y + shared + rng.normal(0, 0.7, n)
    _, se, _ = delong_paired(y, a, b)
    diffs = []
    for _ in range(2000):
        idx = rng.integers(0, n, n)
        if 0 < y[idx].sum() < n:
            diffs.append(roc_auc(y[idx], a[idx]) - roc_auc(y[idx], b[idx]))
    boot = float(np.std(diffs))
    assert abs(se - boot) / boot < 0.08  # Monte-Carlo error of 2000 draws is ~3%
    unpaired_se = delong_unpaired(y, a, y, b)[1]
    assert unpaired_se > 1.5 * se, "pairing removes the shared variance"


def test_multiple_comparison_corrections_by_hand():
    p = [0.01, 0.04, 0.03, np.nan, 0.5]
    assert adjust_p(p, "bh")[[0, 1, 2, 4]] == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.5])
    assert adjust_p(p, "holm")[[0, 1, 2, 4]] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert np.isnan(adjust_p(p)[3])


# --- baselines on the probes' splits -------------------------------------------------------

def test_baselines_are_scored_on_the_probes_own_splits(with_baselines):
    run, grid = with_baselines
    labels = grid.tensor("labels").astype(int)
    test_rows = grid.tensor("test_rows")
    scores = grid.tensor("baseline_scores")
    auc = grid.tensor("baseline_auc_by_seed")
    names = grid.meta["baselines"]["names"]
    assert grid.meta["splits"][1]["test_ids"] == [run.records()[r]["id"]
                                                  for r in test_rows[1] if r >= 0]
    for s in range(2):
        rows = test_rows[s][test_rows[s] >= 0]
        for k in range(len(names)):
            if np.isnan(auc[s, k]):
                continue
            got = scores[s, k, :rows.size].astype(np.float64)
            keep = ~np.isnan(got)
            assert roc_auc(labels[rows[keep]], got[keep]) == pytest.approx(auc[s, k], abs=1e-6)
    assert np.nanmean(auc, 0) == pytest.approx(grid.tensor("baseline_auc"), nan_ok=True)


def test_baseline_directions_are_chosen_on_training_data_only(with_baselines):
    run, grid = with_baselines
    names = grid.meta["baselines"]["names"]
    signs = grid.tensor("baseline_sign")
    labels = grid.tensor("labels").astype(int)
    train = grid.tensor("train_rows")[0]
    train = train[train >= 0]
    k = names.index("p_true_answer")  # a lower P(True) means an error: the sign flips
    p = np.array([r["p_true"]["answer"] for r in run.records()])
    assert signs[0, k] == (1 if roc_auc(labels[train], p[train]) >= 0.5 else -1) == -1


def test_token_identity_and_best_baseline_gains(with_baselines):
    _, grid = with_baselines
    auc, gain0, gain_b = (grid.metric(m) for m in ("auc", "gain_layer0", "gain_baseline"))
    assert gain0 == pytest.approx(auc - auc[grid.layers.index(0)], nan_ok=True)
    best = grid.meta["baselines"]["best"]
    b = grid.meta["baselines"]["names"].index(best)
    assert gain_b == pytest.approx(auc - grid.tensor("baseline_auc")[b], nan_ok=True)
    p, q = grid.tensor("p_vs_baseline"), grid.tensor("q_vs_baseline")
    assert np.all(q[np.isfinite(q)] >= p[np.isfinite(q)] - 1e-12)


def test_the_permutation_null_sits_at_chance_without_signal(tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=300, n_layers=4, hidden=8, signal=0.0)
    grid = open_grid(make_grid(run, tmp_path / "grid", permutations=40, progress=False))
    null = grid.tensor("perm_auc")
    finite = null[np.isfinite(null)]
    assert finite.size >= 400
    assert abs(float(np.median(finite)) - 0.5) <= 0.02
    assert grid.tensor("perm_layer").min() >= 0


def test_the_permutation_null_is_below_a_real_signal(with_baselines):
    _, grid = with_baselines
    best = grid.grid_values.best_cell("auc")
    null = grid.tensor("perm_auc")[best.col]
    assert best.value > np.percentile(null, 95)


# --- the symmetric exact-answer policy -----------------------------------------------------

def test_the_symmetric_span_function_is_never_given_the_label():
    from probeheat.data.exact import locate_exact_answer, locate_exact_answer_symmetric

    symmetric = inspect.signature(locate_exact_answer_symmetric).parameters
    study = inspect.signature(locate_exact_answer).parameters
    assert "grade_result" in study and not any("grade" in p or "correct" in p
                                               for p in symmetric)


def test_a_symmetric_run_uses_the_heuristic_for_right_answers_too(tiny_model_folder, tmp_path):
    out = tmp_path / "run"
    result = cli("run", "--model", tiny_model_folder, "--limit", "6", "--max-new-tokens", "6",
                 "--exact-answer", "symmetric", "--out", out, "--quiet")
    assert result.code == 0, result.err
    run = open_run(out)
    assert run.meta["exact_answer_rule"] == "symmetric"
    assert {r["exact_answer_source"] for r in run.records()} == {"heuristic"}


# --- p(True) -------------------------------------------------------------------------------

def test_p_true_batched_equals_each_alone(tiny_model_folder):
    from probeheat.models import load_model
    from probeheat.run.capture import CaptureEngine
    from probeheat.run.p_true import PTrueScorer

    engine = CaptureEngine(load_model(str(tiny_model_folder), device="cpu"))
    scorer = PTrueScorer(engine, chat=True)
    pairs = [("What is the capital of France?", "Paris"),
             ("Which continent is Kenya in?", "Kenya is in Africa, a large continent."),
             ("What is the currency of Japan?", "yen"), ("Who?", "")]
    batched = scorer.score(pairs)
    alone = [scorer.score([pair])[0] for pair in pairs]
    assert np.allclose(batched, alone, atol=1e-5)
    assert all(0.0 < v < 1.0 for v in batched) and len(set(batched)) > 1


# --- splits, degenerate and clamped cells ----------------------------------------------------

def test_duplicate_questions_never_straddle_the_split():
    labels = np.array([0, 1] * 30)
    groups = np.array([f"q{i // 3}" for i in range(60)], dtype=object)  # 3 rows per question
    train, test = group_split(labels, groups, 0.25, seed=4)
    assert not set(groups[train]) & set(groups[test]) and test.size > 0
    singles = np.array([f"q{i}" for i in range(60)], dtype=object)
    assert all(np.array_equal(a, b) for a, b in zip(group_split(labels, singles, 0.25, 4),
                                                    stratified_split(labels, 0.25, 4),
                                                    strict=True))


def test_a_cell_of_identical_features_is_degenerate_not_chance(tmp_path):
    from probeheat.bundle import RunWriter, tensor_name
    from probeheat.bundle.records import make_record

    rng = np.random.default_rng(0)
    n, positions = 80, ["last_q", "-1"]
    meta = {"fingerprint": "deg", "positions": positions, "layers": [0, 1],
            "sites": {"resid": [0, 1]}, "hidden_size": 4, "dtype": "float32"}
    writer = RunWriter(tmp_path / "run", meta)
    records = [make_record(i, f"q{i}", bool(i % 2), positions={p: 3 for p in positions},
                           missing={}) for i in range(n)]
    x0 = np.ones((n, 2, 4), np.float32)  # layer 0: one token, the same for everybody
    x1 = rng.standard_normal((n, 2, 4)).astype(np.float32)
    writer.add_shard(records, {tensor_name("resid", 0): x0, tensor_name("resid", 1): x1},
                     np.ones((n, 2), bool))
    grid = open_grid(make_grid(writer.finalize(), tmp_path / "grid", progress=False))
    assert np.isnan(grid.metric("auc")[0]).all()
    assert "degenerate" in grid.reasons()[(0, "last_q")]
    assert np.isfinite(grid.metric("auc")[1]).all()


def test_clamped_positions_are_recorded_and_can_be_excluded(tmp_path):
    from probeheat.run.positions import resolve_positions

    ends = resolve_positions(["exact_answer_after_last", "exact_answer_last"], prompt_len=5,
                             gen_len=3, span=(1, 2))
    inside = resolve_positions(["exact_answer_after_last"], prompt_len=5, gen_len=4, span=(1, 2))
    assert ends.clamped == ["exact_answer_after_last"] and inside.clamped == []
    run = write_synthetic_run(tmp_path / "run", n=160, n_layers=3, hidden=8)
    clamped = sum("exact_answer_after_last" in r["clamped"] for r in open_run(run).records())
    grid_all = open_grid(make_grid(run, tmp_path / "a", progress=False))
    grid_some = open_grid(make_grid(run, tmp_path / "b", exclude_clamped=True, progress=False))
    col = grid_all.positions.index("exact_answer_after_last")
    dropped = grid_all.counts()["n_test"][:, col] - grid_some.counts()["n_test"][:, col]
    assert clamped > 0 and (dropped > 0).all()


# --- absent baselines and bad input ------------------------------------------------------------

def test_a_run_without_baselines_lists_them_absent_with_the_reason(tmp_path):
    run = write_synthetic_run(tmp_path / "run", n=160, n_layers=3, hidden=8)
    result = cli("probe", run, "--out", tmp_path / "grid")
    assert result.code == 0
    assert "baselines absent" in result.err and "without baselines" in result.err
    absent = open_grid(tmp_path / "grid").meta["baselines"]["absent"]
    assert absent["p_true_answer"] == "a synthetic run without baselines"


def test_an_older_run_says_why_it_has_no_baselines(tmp_path):
    from hostile import refresh_manifest

    run = write_synthetic_run(tmp_path / "run", n=40, n_layers=2, hidden=4)
    meta = json.loads((run / "run.json").read_text())
    del meta["baselines"]
    (run / "run.json").write_text(json.dumps(meta))
    refresh_manifest(run)
    manifest = json.loads((run / "manifest.json").read_text())
    from probeheat.bundle.manifest import seal

    manifest["format_version"] = "1.1"
    (run / "manifest.json").write_text(json.dumps(seal(manifest)))
    assert "format 1.1" in open_run(run).meta["baselines"]["absent"]


def test_bad_control_arguments_are_refused_before_any_work(tmp_path):
    missing = tmp_path / "no-run"
    for args, expected in ((["--permutations", "0"], "--permutations"),
                           (["--permutations", "100000"], "--permutations")):
        result = cli("probe", missing, "--out", tmp_path / "g", *args)
        assert result.one_line and expected in result.err
    with pytest.raises(UserError, match="--permutations"):
        make_grid(missing, tmp_path / "g", permutations=-1)


def test_a_category_column_that_does_not_exist_is_one_line(tiny_model_folder, tmp_path):
    result = cli("run", "--model", tiny_model_folder, "--limit", "2", "--out", tmp_path / "r",
                 "--category-column", "colour")
    assert result.one_line and "'colour'" in result.err and "'relation'" in result.err


# --- paired comparison across runs that hold the same answers -----------------------------

class _FakeGrid:
    def __init__(self, run: dict, rows, labels):
        self.meta = {"run": run}
        self._t = {"test_rows": np.array([rows]), "labels": np.array(labels)}

    def tensor(self, name):
        return self._t[name]


def test_grids_of_a_run_and_its_answers_from_run_are_paired():
    from probeheat.probe.compare import same_examples

    study = {"id": "a", "path": "x", "content_hash": "A"}
    symmetric = {"id": "b", "path": "y", "content_hash": "B", "answers_from": "A"}
    other = {"id": "c", "path": "z", "content_hash": "C"}
    sibling = {"id": "d", "path": "w", "content_hash": "D", "answers_from": "A"}
    rows, labels = [3, 0, 2, -1], [1, 0, 1, 0]

    def paired(ra, rb, rows_b=rows, labels_b=labels):
        return same_examples(_FakeGrid(ra, rows, labels), _FakeGrid(rb, rows_b, labels_b))

    assert paired(study, study) and paired(study, symmetric) and paired(symmetric, study)
    assert paired(symmetric, sibling)  # both reuse A's answers
    assert not paired(study, other) and not paired(symmetric, other)
    assert not paired(study, symmetric, rows_b=[3, 0, 1, -1])  # other test rows
    assert not paired(study, symmetric, labels_b=[1, 0, 0, 0])  # other labels on them
    assert not paired({"id": "a", "path": "x"}, {"id": "a", "path": "x"})  # no hashes


def test_a_grid_names_the_run_its_run_reused_answers_from(tmp_path):
    from probeheat.probe.grid import grid_run_ref

    class Run:
        id, content_hash, path = "r", "B", tmp_path / "run"
        meta = {"generation": {"answers_from": {"id": "s", "content_hash": "A"}}}

    ref = grid_run_ref(Run(), tmp_path / "grid")
    assert ref == {"id": "r", "content_hash": "B", "path": "../run", "answers_from": "A"}
    Run.meta = {"generation": {"answers_from": None}}
    assert "answers_from" not in grid_run_ref(Run(), tmp_path / "grid")
