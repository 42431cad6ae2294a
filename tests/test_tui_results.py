"""The viewer on what comes after a grid: error-type grids, runs with sampled answers,
selection and steer bundles, head grids and calibration metrics (Pilot)."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
from probeheat.tui.app import ViewerApp
from probeheat.tui.colors import color_of
from probeheat.tui.detail_screen import DetailScreen, SamplesScreen
from probeheat.tui.heatmap import HeatmapView
from probeheat.tui.heatmap_screen import HeatmapScreen
from probeheat.tui.model import GridModel, cell_detail, find_bundles, head_layout
from probeheat.tui.results import SelectionScreen, SteerScreen
from probeheat.tui.run_screen import RunScreen
from probeheat.tui.screens import MessageScreen
from tui_fixtures import (
    answer_prompt,
    make_head_artifacts,
    make_sampled_artifacts,
    pilot_test,
    screen_text,
    status,
)

from probeheat.bundle import open_bundle, open_grid
from probeheat.errors import UserError

SIZE = (120, 40)


@pytest.fixture(scope="module")
def sampled(tmp_path_factory) -> dict[str, Path]:
    return make_sampled_artifacts(tmp_path_factory.mktemp("sampled") / "artifacts")


@pytest.fixture(scope="module")
def heads(tmp_path_factory) -> dict[str, Path]:
    return make_head_artifacts(tmp_path_factory.mktemp("heads") / "artifacts")


def rendered(renderable) -> str:
    from rich.console import Console

    console = Console(width=200, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(renderable)
    return console.export_text()


def footer(app) -> str:
    return screen_text(app).splitlines()[-1]


async def settle(pilot, condition, tries: int = 100) -> None:
    for _ in range(tries):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen never got there")


# -- error-type grids ---------------------------------------------------------------------------

@pilot_test
async def test_a_folder_of_error_type_grids_opens_as_tabs(sampled):
    names = [p.name for p in sampled["type_grids"]]
    assert len(names) >= 2
    app = ViewerApp([sampled["types"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, HeatmapScreen)
        assert [s.model.tab_name for s in screen.states] == names
        title = str(screen.query_one("#title").render())
        assert f"predicts error type {names[0]}" in title
        await pilot.press("enter")
        assert f"type {names[0]}" in screen_text(app)  # the detail names label 1 by its type


@pilot_test
async def test_the_browser_lists_type_folders_selections_and_steers(sampled):
    root = sampled["run"].parent.parent
    kinds = {e.name: e.kind for e in find_bundles(root)}
    assert kinds["grids/sampled-types"] == "types"
    assert kinds["selections/sampled"] == "selection" and kinds["steer/sampled"] == "steer"
    app = ViewerApp([root], root=root)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        rows = [e.name for e in app.screen.entries]
        for name, kind in (("selections/sampled", SelectionScreen),
                           ("steer/sampled", SteerScreen), ("grids/sampled-types", HeatmapScreen)):
            app.screen.query_one("DataTable").move_cursor(row=rows.index(name))
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, kind), name
            assert "? Help" in footer(app) and "q Quit" in footer(app), name
            await pilot.press("escape")
            await pilot.pause()


# -- a run with sampled answers -----------------------------------------------------------------

@pilot_test
async def test_run_page_counts_error_types_and_t_filters_by_type(sampled):
    records = open_bundle(sampled["run"]).records()
    app = ViewerApp([sampled["run"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        text = screen_text(app)
        assert "K = 8 per question" in text and "error type" in text
        table = app.screen.query_one("#run-examples")
        assert table.row_count == len(records)
        await pilot.press("t")
        first = app.screen.error_type  # the first type some question has (paper names)
        assert first != "all types"
        from probeheat.data.error_types import has_type

        expected = sum(has_type(r["error_type"]["types"], first) for r in records)
        assert 0 < table.row_count == expected < len(records)


@pilot_test
async def test_sample_scores_in_the_detail_match_the_selection(sampled):
    """Enter on an example of the cell's detail shows its samples with the probe's scores,
    refitted in a worker; they are the scores `probeheat select` stored for that cell."""
    selection = open_bundle(sampled["selection"])
    cell = selection.meta["cell"]
    rows, stored = selection.tensor("rows"), selection.tensor("scores")
    grid = open_grid(sampled["grid"])
    app = ViewerApp([sampled["grid"]], root=sampled["run"].parent.parent)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        screen.view.move_to(grid.layers.index(cell["layer"]),
                            grid.positions.index(cell["position"]))
        await pilot.press("enter")
        detail = app.screen
        assert isinstance(detail, DetailScreen) and detail.sampled
        assert [s.path.resolve() for s in detail.steers] == [sampled["steer"].resolve()]
        assert "Steering results at this cell (1; s opens them)" in rendered(detail.body())
        assert "s Steer" in footer(app) and "? Help" in footer(app)
        example = detail.shown[0]
        await pilot.press("enter")
        samples = app.screen
        assert isinstance(samples, SamplesScreen)
        await settle(pilot, lambda: samples.scores is not None, tries=600)
        i = int(np.flatnonzero(rows == example.row)[0])
        np.testing.assert_allclose(samples.scores, stored[i], rtol=1e-4, atol=1e-4)
        assert "Sampled answers (K=8)" in screen_text(app)
        await pilot.press("escape")
        await pilot.press("s")  # the steer bundle at this cell
        await pilot.pause()
        assert isinstance(app.screen, SteerScreen)


# -- selection and steer pages ------------------------------------------------------------------

@pilot_test
async def test_selection_page_shows_the_table_and_links(sampled):
    table = open_bundle(sampled["selection"]).meta["table"]
    app = ViewerApp([sampled["selection"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = screen_text(app)
        assert isinstance(app.screen, SelectionScreen)
        assert "Accuracy of the answer each method picks" in text
        for method in ("greedy", "random", "majority", "probe"):
            assert f"{table[method]['accuracy']:.3f}" in text, method
        await pilot.press("question_mark")
        from probeheat.tui.keys import SELECTION

        help_text = screen_text(app)
        assert all(k.text in help_text for k in SELECTION)
        await pilot.press("escape", "g")
        await pilot.pause()
        assert isinstance(app.screen, HeatmapScreen)
        await pilot.press("escape", "r")
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)


@pilot_test
async def test_steer_page_shows_the_verdict_and_the_sweep(sampled):
    steer = open_bundle(sampled["steer"])
    app = ViewerApp([sampled["steer"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        text = " ".join(screen_text(app).split())
        assert isinstance(app.screen, SteerScreen)
        assert " ".join(steer.verdict.split())[:60] in text
        assert "random-2" in text and "+4" in text
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, HeatmapScreen)


@pilot_test
async def test_a_damaged_selection_is_one_line(sampled, tmp_path):
    import shutil

    copy = tmp_path / "sel"
    shutil.copytree(sampled["selection"], copy)
    meta = json.loads((copy / "selection.json").read_text())
    meta["table"]["probe"]["accuracy"] = 0.5
    (copy / "selection.json").write_text(json.dumps(meta))
    app = ViewerApp([copy])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        text = " ".join(screen_text(app).split())
        assert "Cannot open" in text and "the manifest says" in text


# -- head grids ---------------------------------------------------------------------------------

@pilot_test
async def test_head_grid_shows_one_position_s_heads_and_p_steps(heads):
    grid = open_grid(heads["grid"])
    info = grid.heads
    auc = grid.tensor("auc")
    app = ViewerApp([heads["grid"]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        view = screen.query_one(HeatmapView)
        first, second = info["positions"]
        np.testing.assert_array_equal(view.frame.values, auc[:, grid.head_columns(first)])
        assert view.frame.col_names == [f"head {h}" for h in range(info["n_heads"])]
        assert f"L{grid.layers[0]} · {first}/h0" in status(app)
        assert "? Help" in footer(app) and "q Quit" in footer(app)
        await pilot.press("p", "l")
        np.testing.assert_array_equal(view.frame.values, auc[:, grid.head_columns(second)])
        assert f"{second}/h1" in status(app)
        await pilot.press("P")
        assert f"{first}/h1" in status(app)
        await answer_prompt(pilot, "slash", "3")  # a head
        await answer_prompt(pilot, "slash", f"L{grid.layers[-1]}")  # a layer
        assert (view.cursor_row, view.cursor_col) == (len(grid.layers) - 1, 3)
        await answer_prompt(pilot, "slash", second)  # a position: its heads
        assert screen.state.model.head_position == second
        await pilot.press("enter")
        text = screen_text(app)
        assert f"Layer {grid.layers[-1]} · {second}/h3" in text
        column = grid.positions.index(f"{second}/h3")
        assert f"auc            {auc[-1, column]:.3f}" in text


@pilot_test
async def test_head_grid_keys_are_in_help_and_view_help(heads):
    from probeheat.tui.keys import epilog

    assert "Head grids: show the heads of the next position" in epilog()
    app = ViewerApp([heads["grid"]])
    async with app.run_test(size=(120, 50)) as pilot:
        await pilot.press("question_mark")
        assert "Head grids: show the heads of the next position" in screen_text(app)


def test_a_head_layout_that_does_not_match_the_columns_is_refused(tmp_path):
    fake = types.SimpleNamespace(path=tmp_path, positions=["a/h0", "a/h1", "b/h0"],
                                 heads={"n_heads": 2, "positions": ["a", "b"]})
    with pytest.raises(UserError, match="does not match"):
        head_layout(fake)
    fake.heads = {"n_heads": "two"}
    with pytest.raises(UserError, match="not a head layout"):
        head_layout(fake)


# -- calibration metrics ------------------------------------------------------------------------

@pilot_test
async def test_ece_is_drawn_with_low_as_best_and_its_own_range(heads):
    grid = open_grid(heads["grid"])
    app = ViewerApp([heads["grid"]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        view = screen.query_one(HeatmapView)
        while screen.state.metric != "ece":
            await pilot.press("m")
        ece = view.frame.values
        np.testing.assert_array_equal(ece, grid.tensor("ece")[:, screen.state.model.columns])
        low = np.unravel_index(np.nanargmin(ece), ece.shape)
        high = np.unravel_index(np.nanargmax(ece), ece.shape)
        assert view.frame.best == tuple(int(x) for x in low)
        assert (view.frame.vmin, view.frame.vmax) == (0.0, 0.3)  # as the figures draw it
        from probeheat.figures.options import METRIC_RANGES as figure_ranges

        assert figure_ranges["ece"] == (0.0, 0.3)

        def luminance(cell):
            r, g, b = color_of(float(ece[cell]), view.frame.vmin, view.frame.vmax,
                               view.frame.ramp)
            return 0.2126 * r + 0.7152 * g + 0.0722 * b

        assert luminance(low) < luminance(high)  # the best (lowest) ECE is the darkest
        title = str(screen.query_one("#title").render())
        assert f"best {ece[low]:.3f}" in title
        while screen.state.metric != "recall_at_fpr1":
            await pilot.press("m")
        assert (view.frame.vmin, view.frame.vmax) == (0.0, 1.0)
        while screen.state.metric != "auc":
            await pilot.press("m")
        assert (view.frame.vmin, view.frame.vmax) == (0.5, 1.0)


def test_detail_shows_the_reliability_curve(heads):
    grid = open_grid(heads["grid"])
    model = GridModel(grid)
    detail = cell_detail(model, 0, 1)
    count = grid.tensor("reliability_count")[0, model.grid_col(1)]
    observed = grid.tensor("reliability_observed")[0, model.grid_col(1)]
    assert [c for _, _, c in detail.reliability] == [int(c) for c in count if c > 0]
    assert sum(c for _, _, c in detail.reliability) == detail.counts["n_test"]
    np.testing.assert_allclose([o for _, o, _ in detail.reliability], observed[count > 0])
    assert "ece" in detail.lower and "auc" not in detail.lower


@pilot_test
async def test_a_head_grid_exports_the_position_on_screen(heads, tmp_path):
    from probeheat.figures import Highlight, export_grid

    app = ViewerApp([heads["grid"]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("p", "r", "j", "l", "r")
        args = app.screen.export_arguments()
        assert args["position"] == open_grid(heads["grid"]).heads["positions"][1]
        assert args["highlights"] == ((1, 2, "0", "1"),)
    args["highlights"] = tuple(Highlight(*box) for box in args["highlights"])
    out = export_grid(open_grid(heads["grid"]), tmp_path / "heads.png", **args)
    assert out.stat().st_size > 0
