"""Head grids and probe families from the command line: `probe --site head [--position P]`,
`probe --probe a,b` (one grid per family, compared cell by cell), and `export` of head
grids and calibration metrics, read back from the written files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_figures import axis_texts, export, svg_groups

from probeheat.bundle import open_grid, verify_bundle, write_grid
from probeheat.cli import main
from probeheat.probe.compare import compare
from probeheat.probe.metrics import delong_paired
from probeheat.probe.report import family_rows
from probeheat.synthetic import write_synthetic_run

H, HD = 4, 6


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("headruns")
    return {"heads": write_synthetic_run(root / "heads", n=200, n_layers=5, hidden=8,
                                         heads=(H, HD), seed=3, signal=2.5),
            "plain": write_synthetic_run(root / "plain", n=120, n_layers=3, hidden=8, seed=3)}


@pytest.fixture(scope="module")
def head_grid(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hg") / "grid"
    assert main(["probe", str(runs["heads"]), "--site", "head", "--out", str(out), "--quiet",
                 "--positions", "exact_answer_last,exact_answer_first,-1",
                 "--permutations", "2"]) == 0
    return out


def probe(argv: list, capsys) -> tuple[int, str]:
    code = main(["probe", *map(str, argv)])
    return code, capsys.readouterr().err


# ---------------------------------------------------------------- probe --site head


def test_a_head_grid_has_a_column_per_position_and_head(head_grid):
    grid = open_grid(head_grid)
    assert verify_bundle(head_grid) == []
    heads = grid.heads
    assert heads["n_heads"] == H and heads["head_dim"] == HD
    assert heads["positions"] == ["exact_answer_last", "exact_answer_first", "-1"]
    assert grid.positions[:H + 1] == [f"exact_answer_last/h{h}" for h in range(H)] \
        + ["exact_answer_first/h0"]
    assert grid.layers == [1, 2, 3, 4]  # head.k: decoder layer k - 1, as attn.k
    auc = grid.metric("auc")
    cols = grid.head_columns("exact_answer_last")
    # the synthetic run plants the signal most in head 1 and none in the last head
    by_head = np.nanmax(auc[:, cols], axis=0)
    assert int(np.argmax(by_head)) == 1 and by_head[-1] < by_head[1] - 0.15
    assert {"ece", "recall_at_fpr1", "recall_at_fpr5"} <= set(grid.metrics)
    from probeheat.bundle.summary import summarize

    assert summarize(grid)["shape"] == (f"4 layers x {H} heads at 3 position(s) "
                                        "(exact_answer_last, exact_answer_first, -1)")


def test_position_gives_one_layer_by_head_grid(runs, tmp_path, capsys):
    out = tmp_path / "one"
    code, err = probe([runs["heads"], "--site", "head", "--position", "exact_answer_last",
                       "--out", out, "--no-controls"], capsys)
    assert code == 0, err
    grid = open_grid(out)
    assert grid.heads["positions"] == ["exact_answer_last"] and len(grid.positions) == H
    assert f"{len(grid.layers)} layers x {H} heads at 1 position(s)" in err


@pytest.mark.parametrize("argv,message", [
    (["--position", "-1", "--positions", "-1"], "--position: cannot be combined"),
    (["--position", "-2,-1"], "--position: takes one position"),
    (["--probe", "ridge"], "unknown probe family 'ridge' (choose one of: logistic, mass-mean, "
                           "mass-mean-iid, logistic-cv)"),
    (["--probe", "logistic,logistic"], "named twice"),
])
def test_bad_probe_options_are_one_line(runs, tmp_path, capsys, argv, message):
    code, err = probe([runs["heads"], "--out", tmp_path / "x", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_a_run_without_the_head_site_is_one_line_naming_the_fix(runs, tmp_path, capsys):
    code, err = probe([runs["plain"], "--site", "head", "--out", tmp_path / "x"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "no site 'head'" in err and "--sites resid,head" in err and "sites here: resid" in err


def test_the_site_help_lists_head(capsys):
    with pytest.raises(SystemExit):
        main(["probe", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "resid, mlp, attn or head" in text and "--probe" in text and "--position P" in text


# ---------------------------------------------------------------- probe --probe a,b


@pytest.fixture(scope="module")
def family_grids(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("fam") / "families"
    code = main(["probe", str(runs["heads"]), "--probe", "mass-mean,logistic", "--out", str(out),
                 "--positions", "exact_answer_last,-1", "--permutations", "2"])
    assert code == 0
    return out


def test_several_families_write_one_grid_each_on_the_same_splits(family_grids):
    grids = {name: open_grid(family_grids / name) for name in ("mass-mean", "logistic")}
    assert sorted(p.name for p in family_grids.iterdir()) == ["logistic", "mass-mean"]
    for name, grid in grids.items():
        assert grid.meta["probe"]["family"] == name
    a, b = grids["mass-mean"], grids["logistic"]
    np.testing.assert_array_equal(a.tensor("test_rows"), b.tensor("test_rows"))
    assert not np.allclose(np.nan_to_num(a.tensor("scores")), np.nan_to_num(b.tensor("scores")))


def test_the_family_table_uses_paired_delong_on_the_same_examples(family_grids, capsys):
    grids = {name: open_grid(family_grids / name) for name in ("mass-mean", "logistic")}
    rows = {r.family: r for r in family_rows(grids, "mass-mean")}
    ref, other = grids["mass-mean"], grids["logistic"]
    best = other.grid_values.best_cell("auc")
    # by hand: the two families' scores at logistic's best cell, on the shared test rows
    te = other.tensor("test_rows")[0]
    y = other.tensor("labels").astype(np.int64)[te]
    s_other = other.tensor("scores")[0, best.row, best.col, :te.size].astype(np.float64)
    s_ref = ref.tensor("scores")[0, best.row, best.col, :te.size].astype(np.float64)
    keep = np.isfinite(s_other) & np.isfinite(s_ref)
    p = delong_paired(y[keep], s_other[keep], s_ref[keep])[2]
    assert rows["logistic"].p_same == pytest.approx(p, rel=1e-9)
    assert rows["mass-mean"].p_same is None  # the reference row
    tests = compare(other, ref)
    assert tests.paired and rows["logistic"].compared == int(np.isfinite(tests.delta).sum())


def test_probe_prints_the_family_comparison(runs, tmp_path, capsys):
    out = tmp_path / "fam"
    code, err = probe([runs["heads"], "--probe", "logistic,mass-mean-iid", "--out", out,
                       "--positions", "exact_answer_last", "--no-controls"], capsys)
    assert code == 0, err
    table = err[err.index("probe families, cell by cell:"):]
    assert "p vs logistic best" in table and "mass-mean-iid" in table
    assert "paired DeLong" in table


def test_several_families_refuse_error_type_and_transfer(runs, tmp_path, capsys):
    code, err = probe([runs["heads"], "--probe", "logistic,mass-mean", "--target", "error-type",
                       "--out", tmp_path / "x"], capsys)
    assert code == 2 and "--probe" in err and err.count("\n") == 1
    code, err = probe(["--train", runs["heads"], "--test", runs["heads"], "--probe",
                       "logistic,mass-mean", "--out", tmp_path / "y"], capsys)
    assert code == 2 and "one RUN" in err


# ---------------------------------------------------------------- export of head grids


def test_export_draws_one_panel_per_position_with_head_on_x(head_grid, tmp_path):
    code, _ = export([head_grid, "-o", tmp_path / "f.svg"])
    assert code == 0
    groups = svg_groups(tmp_path / "f.svg")
    panels = [k for k in groups if k.startswith("heatmap-")]
    assert len(panels) == 3
    texts = axis_texts(groups["heatmap-3"])  # the bottom row carries the x label
    assert texts["xlabel"] == ["Head"] and texts["xticks"] == [str(h) for h in range(H)]


def test_export_position_draws_that_positions_heads(head_grid, tmp_path):
    from matplotlib.image import imread

    from probeheat.figures.view import head_views

    grid = open_grid(head_grid)
    code, _ = export([head_grid, "-o", tmp_path / "one.svg", "--position", "-1"])
    assert code == 0
    groups = svg_groups(tmp_path / "one.svg")
    assert "heatmap" in groups and not any(k.startswith("heatmap-") for k in groups)
    assert axis_texts(groups["heatmap"])["xlabel"] == ["Head"]
    (view,) = head_views(grid, position="-1")
    np.testing.assert_array_equal(view.values, grid.metric("auc")[:, grid.head_columns("-1")])
    assert view.title == "-1"
    assert export([head_grid, "-o", tmp_path / "one.png", "--position", "-1"])[0] == 0
    assert imread(tmp_path / "one.png").shape[2] in (3, 4)


@pytest.mark.parametrize("argv,message", [
    (["--position", "last_q"], "'last_q' is not in"),
    (["--metric", "brier"], "has no metric 'brier' (this grid has: auc, accuracy"),
])
def test_export_refusals_are_one_line(head_grid, tmp_path, capsys, argv, message):
    code, err = export([head_grid, "-o", tmp_path / "f.png", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "f.png").exists()


def test_export_position_refuses_a_grid_without_heads(tmp_path, capsys):
    grid = write_grid(tmp_path / "g", {"layers": [0, 1], "positions": ["a", "b"],
                                       "metrics": ["auc"]}, {"auc": np.full((2, 2), 0.7)})
    code, err = export([grid, "-o", tmp_path / "f.png", "--position", "a"], capsys)
    assert code == 2 and "is not a head grid" in err


def calibration_grid(path: Path) -> Path:
    ece = np.full((8, 6), 0.06)
    ece[4:] = 0.24
    ece[0, 0] = 0.01  # the best-calibrated cell
    meta = {"layers": list(range(8)), "positions": [f"p{k}" for k in range(6)],
            "metrics": ["auc", "ece", "recall_at_fpr5"]}
    return write_grid(path, meta, {"auc": np.full((8, 6), 0.8), "ece": ece,
                                   "recall_at_fpr5": np.full((8, 6), 0.25)})


def test_export_metric_ece_uses_a_reversed_ramp_from_zero(tmp_path):
    import matplotlib
    from matplotlib.image import imread

    path = calibration_grid(tmp_path / "cal")
    assert export([path, "-o", tmp_path / "ece.png"] + ["--metric", "ece"])[0] == 0
    rgb = imread(tmp_path / "ece.png")[..., :3]
    blues = matplotlib.colormaps["Blues"]

    def pixels_near(colour) -> int:
        return int((np.abs(rgb - np.asarray(colour)[:3]).max(axis=-1) < 1.5 / 255).sum())

    # 0.06 and 0.24 sit at 20% and 80% of the 0..0.3 scale, drawn on Blues reversed
    assert pixels_near(blues(0.8)) > 10_000 and pixels_near(blues(0.2)) > 10_000
    assert pixels_near(blues(0.5)) < 2_000


def test_export_recall_scale_and_ece_best_is_the_lowest(tmp_path):
    from probeheat.figures import grid_view

    grid = open_grid(calibration_grid(tmp_path / "cal"))
    view = grid_view(grid, metric="ece", mark_best=True)
    assert view.best == (0, 0) and view.cmap == "Blues_r" and (view.vmin, view.vmax) == (0, 0.3)
    view = grid_view(grid, metric="recall_at_fpr5", mark_best=True)
    assert (view.vmin, view.vmax) == (0.0, 1.0) and view.label == "Recall at 5% FPR"
    assert export([grid.path, "-o", tmp_path / "r.pdf", "--metric", "recall_at_fpr5"])[0] == 0
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
