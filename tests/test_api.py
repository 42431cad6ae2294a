"""`probeheat.open`: notebook objects over bundles, their DataFrames checked against the bundle
files, and `probeheat export GRID -o grid.csv|json|parquet` read back."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import probeheat
from probeheat.api import Generalization, Grid, Run
from probeheat.bundle import open_grid, open_run, write_generalization
from probeheat.cli import main
from probeheat.errors import UserError

pd = pytest.importorskip("pandas")

SAMPLES = Path(__file__).resolve().parents[1] / "artifacts" / "samples"
SAMPLE_RUN, SAMPLE_GRID = SAMPLES / "run-synthetic", SAMPLES / "grid-synthetic"
COLUMNS = ["layer", "position", "metric", "value", "lo", "hi", "n", "spread", "reason"]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """A run with baselines and its grid over two seeds; a run with a position no example
    has, and its grid (a column of empty cells, with their reasons)."""
    from probeheat.probe.grid import make_grid
    from probeheat.synthetic import write_synthetic_run

    root = tmp_path_factory.mktemp("api")
    run = write_synthetic_run(root / "run", baselines=True, n=80, n_layers=4)
    grid = make_grid(run, root / "grid", seeds=(0, 1), progress=False)
    sparse_run = write_synthetic_run(root / "sparse-run", n=60, n_layers=3,
                                     positions=("last_q", "first_answer+12"))
    sparse = make_grid(sparse_run, root / "sparse-grid", progress=False, controls=False)
    return {"run": run, "grid": grid, "sparse": sparse}


def grid_paths(made) -> list[Path]:
    return [SAMPLE_GRID, made["grid"], made["sparse"]]


def export(argv: list, capsys=None) -> tuple[int, str]:
    code = main(["export", *map(str, argv)])
    return code, capsys.readouterr().err if capsys else ""


def one_line(exc: pytest.ExceptionInfo, *words: str) -> None:
    text = str(exc.value)
    assert "\n" not in text and all(w in text for w in words), text


def same(a, b) -> bool:
    """Equal, NaN and None counting as one 'no value'."""
    blank = [x is None or (isinstance(x, float) and math.isnan(x)) for x in (a, b)]
    return all(blank) or (not any(blank) and a == b)


# ---------------------------------------------------------------- importing and opening


def test_import_probeheat_is_light_and_open_loads_no_pandas():
    heavy = ["torch", "transformers", "textual", "matplotlib", "pandas", "ml_dtypes",
             "safetensors"]
    code = f"import sys, probeheat; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"
    code = ("import sys, probeheat; g = probeheat.open(sys.argv[1]); g.best_cell(); "
            "g.run().activations(0, 'last_q'); "
            f"print([m for m in {heavy[:5]!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code, str(SAMPLE_GRID)], capture_output=True,
                            text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_open_gives_objects_over_the_bundle(made):
    from probeheat import open as open_bundle_view

    grid, run = probeheat.open(SAMPLE_GRID), open_bundle_view(SAMPLE_RUN)
    assert isinstance(grid, Grid) and isinstance(run, Run)
    assert probeheat.Grid is Grid and "open" in dir(probeheat)
    assert grid.path == SAMPLE_GRID and grid.bundle.kind == "grid"
    assert grid.meta == open_grid(SAMPLE_GRID).meta and run.meta["n_examples"] == 200
    assert run.id in repr(run) and "200 examples" in repr(run)
    assert grid.id in repr(grid) and "17 layers x 15 positions" in repr(grid)
    assert "best auc" in repr(grid) and "2 seed(s)" in repr(probeheat.open(made["grid"]))
    assert probeheat.open(grid.bundle).bundle is grid.bundle
    assert grid.run().id == grid.bundle.run_ref["id"]
    with pytest.raises(AttributeError):
        probeheat.no_such_thing  # noqa: B018


def test_open_refuses_what_is_not_a_bundle_in_one_line(tmp_path):
    with pytest.raises(UserError) as exc:
        probeheat.open(tmp_path / "nothing")
    one_line(exc, "nothing")


def test_a_grid_whose_run_is_gone_says_so(made, tmp_path):
    import shutil

    copy = tmp_path / "alone"
    shutil.copytree(made["grid"], copy)
    with pytest.raises(UserError) as exc:
        probeheat.open(copy).run()
    one_line(exc, "cannot find its run", "probeheat.open(path)")


# ---------------------------------------------------------------- grids


def cells(df, metric: str, column: str, shape) -> np.ndarray:
    part = df[df.metric == metric]
    return part[column].to_numpy(dtype=np.float64).reshape(shape)


@pytest.mark.parametrize("which", [0, 1, 2], ids=["sample", "two-seeds", "empty-cells"])
def test_to_pandas_holds_the_bundle_tensors(made, which):
    path = grid_paths(made)[which]
    grid, bundle = probeheat.open(path), open_grid(path)
    df = grid.to_pandas()
    L, P, M = len(bundle.layers), len(bundle.positions), len(bundle.metrics)
    assert list(df.columns) == COLUMNS and len(df) == L * P * M
    first = df[df.metric == bundle.metrics[0]]
    assert first.layer.tolist() == [x for x in bundle.layers for _ in range(P)]
    assert first.position.tolist() == bundle.positions * L
    for metric in bundle.metrics:
        np.testing.assert_array_equal(cells(df, metric, "value", (L, P)), bundle.metric(metric))
        bounds = bundle.interval(metric)
        for k, column in enumerate(("lo", "hi")):
            want = bounds[k] if bounds else np.full((L, P), np.nan)
            np.testing.assert_array_equal(cells(df, metric, column, (L, P)), want)
        std = (bundle.tensor(f"{metric}_std") if f"{metric}_std" in bundle.tensor_names
               else np.full((L, P), np.nan))
        np.testing.assert_array_equal(cells(df, metric, "spread", (L, P)), std)
        np.testing.assert_array_equal(cells(df, metric, "n", (L, P)), bundle.counts()["n_test"])
    reasons = bundle.reasons()
    for row in df.itertuples():
        empty = math.isnan(row.value) and (row.layer, row.position) in reasons
        assert same(row.reason, reasons[(row.layer, row.position)] if empty else None)


def test_a_grid_without_counts_or_intervals_has_nan_there(tmp_path):
    from probeheat.bundle import write_grid

    values = np.array([[0.6, np.nan], [0.7, 0.8]])
    path = write_grid(tmp_path / "bare", {"layers": [0, 1], "positions": ["a", "-1"],
                                          "metrics": ["auc"]}, {"auc": values})
    df = probeheat.open(path).to_pandas()
    assert df.value.tolist()[:1] == [0.6] and math.isnan(df.value[1])
    for column in ("lo", "hi", "n", "spread"):
        assert df[column].dtype == np.float64 and df[column].isna().all(), column
    assert df.reason.isna().all() and df.position.tolist() == ["a", "-1", "a", "-1"]
    for ext in ("csv", "json", "parquet"):
        assert_same_table(read_back(probeheat.open(path).write(tmp_path / f"g.{ext}")), df)


def test_empty_cells_carry_their_reason(made):
    df = probeheat.open(made["sparse"]).to_pandas()
    empty = df[df.position == "first_answer+12"]
    assert len(empty) and empty.value.isna().all()
    assert empty.reason.str.contains("too few training examples").all()
    assert df[df.position == "last_q"].reason.isna().all()


def test_seed_spread_and_gains_are_there_with_two_seeds(made):
    df = probeheat.open(made["grid"]).to_pandas()
    assert {"auc", "accuracy", "gain_layer0", "gain_baseline"} <= set(df.metric)
    auc = df[df.metric == "auc"]
    assert (auc.spread > 0).any() and (auc.lo <= auc.value).all() and (auc.value <= auc.hi).all()
    gains = df[df.metric == "gain_layer0"]
    assert gains.lo.isna().all() and gains.spread.isna().all()


def test_best_cell_is_the_bundles(made):
    grid = probeheat.open(made["grid"])
    best = grid.best_cell()
    assert (best.layer, best.position, best.value) == grid.bundle.best_cell("auc")
    df = grid.to_pandas()
    auc = df[df.metric == "auc"]
    assert auc.loc[auc.value.idxmax(), "value"] == best.value
    with pytest.raises(UserError) as exc:
        grid.best_cell("f1")
    one_line(exc, "unknown metric 'f1'")


def test_baselines_table_holds_the_baseline_tensors(made):
    grid, bundle = probeheat.open(made["grid"]), open_grid(made["grid"])
    table = grid.baselines()
    info = bundle.meta["baselines"]
    assert list(table.columns) == ["name", "auc", "lo", "hi", "n_test", "absent", "description"]
    assert table.name.tolist() == info["names"]
    for column, tensor in (("auc", "baseline_auc"), ("lo", "baseline_auc_lo"),
                           ("hi", "baseline_auc_hi")):
        np.testing.assert_array_equal(table[column].to_numpy(np.float64), bundle.tensor(tensor))
    np.testing.assert_array_equal(table.n_test.to_numpy(), bundle.tensor("baseline_n_test")[0])
    assert table.description.tolist() == [info["descriptions"][n] for n in info["names"]]
    assert [same(a, info["absent"].get(n)) for a, n in zip(table.absent, table.name,
                                                           strict=True)] == [True] * len(table)


def test_a_grid_without_baselines_gives_no_rows_and_the_reason(made):
    table = probeheat.open(made["sparse"]).baselines()  # probed with controls=False
    assert len(table) == 0 and "names no baselines" in table.attrs["absent"]


# ---------------------------------------------------------------- runs


@pytest.mark.parametrize("which", ["sample", "baselines"])
def test_records_are_one_row_per_example_in_row_order(made, which):
    path = SAMPLE_RUN if which == "sample" else made["run"]
    run, bundle = probeheat.open(path), open_run(path)
    df, records = run.records(), bundle.records()
    assert len(df) == bundle.n_examples and df.index.name == "row"
    assert df.index.tolist() == list(range(bundle.n_examples)) == df["index"].tolist()
    assert df.id.tolist() == [r["id"] for r in records]
    assert df.correct.tolist() == [r["correct"] for r in records]
    for name in bundle.positions:
        got = [None if v is pd.NA else int(v) for v in df[f"pos.{name}"]]
        assert got == [r["positions"].get(name) for r in records]
        assert [same(a, r["missing"].get(name)) for a, r in
                zip(df[f"missing.{name}"], records, strict=True)] == [True] * len(records)
    assert "positions" not in df and "missing" not in df and "p_true" not in df
    assert df.exact_span.tolist() == [r["exact_span"] for r in records]
    if which == "baselines":
        for column, key in (("p_true_answer", "answer"), ("p_true_exact", "exact_answer")):
            assert [same(a, r["p_true"][key]) for a, r in
                    zip(df[column], records, strict=True)] == [True] * len(records)
        assert df.token_logprobs.tolist() == [r["token_logprobs"] for r in records]
        assert df.category.tolist() == [r["category"] for r in records]
    else:
        assert "p_true_answer" not in df


@pytest.mark.parametrize("layer,position", [(0, "last_q"), (8, "exact_answer_last"),
                                            (16, "-1")])
def test_activations_are_the_layers_rows_with_the_position(layer, position):
    run, bundle = probeheat.open(SAMPLE_RUN), open_run(SAMPLE_RUN)
    x, ids = run.activations(layer=layer, position=position)
    full, mask = bundle.read_layer(layer)
    column = bundle.positions.index(position)
    have = mask[:, column]
    assert x.dtype == np.float32 and x.shape == (int(have.sum()), bundle.hidden_size)
    np.testing.assert_array_equal(x, full[have, column])
    assert ids.tolist() == [r["id"] for r, keep in zip(bundle.records(), have, strict=True)
                            if keep]
    x2, rows = run.activations(np.int64(layer), position, rows=True)
    np.testing.assert_array_equal(x2, x)
    assert rows.tolist() == np.flatnonzero(have).tolist()
    assert run.labels(rows).tolist() == bundle.labels()[have].tolist()


def test_activations_take_a_position_number_and_read_one_layer(monkeypatch):
    run = probeheat.open(SAMPLE_RUN)
    read = []
    original = type(run.bundle).read_layer
    monkeypatch.setattr(type(run.bundle), "read_layer",
                        lambda self, layer, site="resid", **kw: read.append((layer, site))
                        or original(self, layer, site, **kw))
    x, _ = run.activations(3, -1)
    np.testing.assert_array_equal(x, run.activations(3, "-1")[0])
    assert read == [(3, "resid"), (3, "resid")]


@pytest.mark.parametrize("kwargs,words", [
    ({"layer": 0, "position": "nowhere"}, ("no position 'nowhere'", "positions here")),
    ({"layer": 99, "position": "last_q"}, ("no resid layer 99",)),
    ({"layer": 1.5, "position": "last_q"}, ("is not a layer number",)),
    ({"layer": "two", "position": "last_q"}, ("is not a layer number",)),
    ({"layer": 1, "position": "last_q", "site": "mlp"}, ("no mlp layer 1",)),
])
def test_activations_refuse_bad_input_in_one_line(kwargs, words):
    with pytest.raises(UserError) as exc:
        probeheat.open(SAMPLE_RUN).activations(**kwargs)
    one_line(exc, *words)


# ---------------------------------------------------------------- without pandas


def test_dataframes_without_pandas_say_how_to_get_it(monkeypatch, made, tmp_path):
    grid, run = probeheat.open(made["grid"]), probeheat.open(made["run"])
    monkeypatch.setitem(sys.modules, "pandas", None)
    for call in (run.records, grid.to_pandas, grid.baselines):
        with pytest.raises(UserError) as exc:
            call()
        one_line(exc, "pip install pandas")
    assert run.activations(0, "last_q")[0].shape[1] == 8  # numpy needs no pandas
    for ext in ("csv", "json"):  # nor do the csv and json tables
        assert export([made["grid"], "-o", tmp_path / f"g.{ext}"]) == (0, "")


# ---------------------------------------------------------------- exported tables


def read_csv(path: Path) -> pd.DataFrame:
    """A table written by the csv module, read by it: text columns as text, empty = None,
    numbers exactly (pandas' own float parser need not round-trip every digit)."""
    import csv

    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0])
    text = ("position", "metric", "reason", "train", "test")
    return pd.DataFrame({c: [(r[c] or None) if c in text else float(r[c] or "nan")
                             for r in rows] for c in columns})


def read_back(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return read_csv(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    rows = json.loads(path.read_text())
    assert all(list(row) == COLUMNS for row in rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def assert_same_table(got: pd.DataFrame, want: pd.DataFrame) -> None:
    assert list(got.columns) == list(want.columns) and len(got) == len(want)
    for column in want.columns:
        if column in ("position", "metric", "reason", "train", "test"):
            pairs = zip(got[column].tolist(), want[column].tolist(), strict=True)
            assert all(same(a, b) for a, b in pairs), column
        else:
            np.testing.assert_array_equal(got[column].to_numpy(np.float64),
                                          want[column].to_numpy(np.float64), err_msg=column)


@pytest.mark.parametrize("ext", ["csv", "json", "parquet"])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["sample", "two-seeds", "empty-cells"])
def test_exported_tables_read_back_as_to_pandas(made, tmp_path, capsys, ext, which):
    path = grid_paths(made)[which]
    out = tmp_path / f"grid.{ext}"
    code, err = export([path, "-o", out], capsys)
    assert (code, err) == (0, "") and sorted(p.name for p in tmp_path.iterdir()) == [out.name]
    assert_same_table(read_back(out), probeheat.open(path).to_pandas())


def test_json_uses_null_for_nan(made, tmp_path):
    out = probeheat.open(made["sparse"]).write(tmp_path / "g.json")
    text = out.read_text()
    assert "NaN" not in text and '"reason": null' in text and '"value": null' in text
    assert text.startswith("[\n{") and text.endswith("}\n]\n")


def test_csv_leaves_missing_values_empty(made, tmp_path):
    out = probeheat.open(SAMPLE_GRID).write(tmp_path / "g.csv")
    header, first, second = out.read_text().splitlines()[:3]
    assert header == ",".join(COLUMNS)
    assert first.startswith("0,last_q,auc,") and first.endswith(",")
    assert second.startswith("0,last_q,accuracy,") and ",,," in second


def test_exporting_again_replaces_the_table(made, tmp_path):
    out = tmp_path / "g.csv"
    out.write_text("old")
    assert export([SAMPLE_GRID, "-o", out]) == (0, "")
    assert out.read_text().startswith("layer,") and len(list(tmp_path.iterdir())) == 1


def test_failed_write_keeps_the_old_table_and_leaves_no_temporary(made, tmp_path, monkeypatch,
                                                                  capsys):
    import os

    out = tmp_path / "g.json"
    out.write_text("old")

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    code, err = export([SAMPLE_GRID, "-o", out], capsys)
    assert code == 2 and "No space left" in err and err.count("\n") == 1
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["g.json"]


def test_parquet_without_pyarrow_is_one_line_before_reading(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code, err = export([tmp_path / "not-read", "-o", tmp_path / "g.parquet"], capsys)
    assert code == 2 and "pip install pyarrow" in err and err.count("\n") == 1
    assert "not-read" not in err and list(tmp_path.iterdir()) == []
    with pytest.raises(UserError) as exc:
        probeheat.open(SAMPLE_GRID).write(tmp_path / "g.parquet")
    one_line(exc, "pip install pyarrow")


BAD = [
    (["-o", "{d}/g.xlsx"], "unsupported extension '.xlsx'"),
    (["-o", "{d}/grid"], "unsupported extension '(none)'"),
    (["-o", "{d}/missing/g.csv"], "does not exist"),
    (["-o", "{d}/g.csv", "--mark-best"], "--mark-best: applies to figures"),
    (["-o", "{d}/g.json", "--metric", "auc"], "--metric: applies to figures"),
    (["-o", "{d}/g.csv", "--dpi", "300"], "--dpi: applies to figures"),
    (["{grid}", "-o", "{d}/g.csv"], "a table holds one bundle"),
    (["-o", "{grid}/g.csv"], "sit inside the input bundle"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[m for _, m in BAD])
def test_bad_table_exports_fail_in_one_line_without_a_file(made, tmp_path, capsys, argv,
                                                           message):
    out = tmp_path / "out"
    out.mkdir()
    fill = {"d": out, "grid": made["grid"]}
    code, err = export([made["grid"], *[a.format(**fill) for a in argv]], capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(out.iterdir()) == [] and not list(made["grid"].glob("g.*"))


def test_a_run_bundle_is_not_a_table(tmp_path, capsys):
    code, err = export([SAMPLE_RUN, "-o", tmp_path / "r.csv"], capsys)
    assert code == 2 and "is a run bundle" in err and "records()" in err
    assert list(tmp_path.iterdir()) == []


def test_figure_export_is_unchanged(tmp_path, capsys):
    out = tmp_path / "f.svg"
    assert export([SAMPLE_GRID, "-o", out], capsys) == (0, "")
    assert out.read_text().lstrip().startswith("<?xml")
    code, err = export([SAMPLE_GRID, "-o", tmp_path / "f.jpg"], capsys)
    assert code == 2 and "unsupported extension '.jpg'" in err and ".csv" in err


# ---------------------------------------------------------------- generalization


@pytest.fixture
def generalization(tmp_path) -> Path:
    names = ["TriviaQA", "HotpotQA"]
    runs = [{"name": n, "id": n, "content_hash": "0", "layer": 3, "position": "-1"} for n in names]
    meta = {"train_runs": runs, "test_runs": runs, "auc_lo": [[0.7, 0.5], [0.55, None]],
            "auc_hi": [[0.9, 0.7], [0.75, None]], "n_test": [[40, 40], [41, None]]}
    return write_generalization(tmp_path / "gen", meta, np.array([[0.8, 0.6], [0.65, np.nan]]))


def test_generalization_gives_its_matrix_and_a_tidy_table(generalization, tmp_path, capsys):
    gen = probeheat.open(generalization)
    assert isinstance(gen, Generalization) and "2 train x 2 test" in repr(gen)
    matrix = gen.matrix()
    assert matrix.index.tolist() == ["TriviaQA", "HotpotQA"] == matrix.columns.tolist()
    np.testing.assert_array_equal(matrix.to_numpy(), gen.bundle.matrix())
    df = gen.to_pandas()
    assert list(df.columns) == ["train", "test", "metric", "value", "lo", "hi", "n"]
    assert df.value.tolist()[:3] == [0.8, 0.6, 0.65] and math.isnan(df.value.iloc[3])
    assert df.lo.tolist()[:3] == [0.7, 0.5, 0.55] and df.n.tolist()[:3] == [40, 40, 41]
    out = tmp_path / "gen.csv"
    assert export([generalization, "-o", out], capsys) == (0, "")
    assert_same_table(read_csv(out), df)
    assert_same_table(pd.read_csv(out), df)
