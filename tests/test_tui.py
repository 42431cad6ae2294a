"""The viewer: colours, bundle discovery, and the screens driven by keys and mouse (Pilot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from probeheat.tui import colors
from probeheat.tui.app import ViewerApp
from probeheat.tui.heatmap import HeatmapView
from probeheat.tui.heatmap_screen import HeatmapScreen
from probeheat.tui.model import (
    GridModel,
    abbreviate,
    cell_detail,
    column_headers,
    diff_values,
    find_bundles,
    match_jump,
)
from probeheat.tui.screens import PickScreen
from tui_fixtures import (
    POSITIONS,
    SIZE,
    answer_prompt,
    make_artifacts,
    make_grid,
    pilot_test,
    screen_text,
    status,
)

from probeheat.bundle import open_grid


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    return make_artifacts(tmp_path_factory.mktemp("artifacts"))


# -- colours and small pure pieces ----------------------------------------------------------

@pytest.mark.parametrize("ramp,mpl_name", [("Blues", "Blues"), ("RdBu_r", "RdBu_r")])
def test_ramps_match_matplotlib(ramp, mpl_name):
    matplotlib = pytest.importorskip("matplotlib")
    cmap = matplotlib.colormaps[mpl_name]
    for t in np.linspace(0, 1, 513):
        expected = np.array(cmap(t)[:3]) * 255
        got = np.array(colors.lookup_table(ramp)[colors.ramp_index(t)])
        assert np.abs(expected - got).max() <= 0.5 + 1e-9, t


def test_color_of_clips_to_range_and_leaves_nan_out():
    assert colors.color_of(0.2, 0.5, 1.0) == (0xF7, 0xFB, 0xFF)  # below range: palest
    assert colors.color_of(1.5, 0.5, 1.0) == (0x08, 0x30, 0x6B)  # above range: darkest
    assert colors.color_of(float("nan"), 0.5, 1.0) is None
    assert colors.shade_of(0.5, 0.5, 1.0) == " " and colors.shade_of(1.0, 0.5, 1.0) == "█"


def test_abbreviations_fit_and_stay_unique():
    for width in (3, 5, 8):
        heads = column_headers(POSITIONS, width)
        assert all(len(h) <= width for h in heads)
        assert len(set(heads)) == len(heads)
    assert abbreviate("exact_answer_last", 7) == "ex_last"
    assert abbreviate("-1", 3) == "-1"
    assert column_headers(["layer_alpha_one", "layer_alpha_two"], 3)[0] != \
        column_headers(["layer_alpha_one", "layer_alpha_two"], 3)[1]


def test_jump_matches_layers_and_positions():
    layers = list(range(32))
    assert match_jump("14", layers, POSITIONS) == ("row", 14)
    assert match_jump("-1", layers, POSITIONS) == ("col", POSITIONS.index("-1"))
    assert match_jump("exact_answer_l", layers, POSITIONS) == ("col", 5)
    assert match_jump("after", layers, POSITIONS) == ("col", 6)
    assert match_jump("99", layers, POSITIONS) is None
    assert match_jump("nonsense", layers, POSITIONS) is None


def test_find_bundles_lists_kinds_and_skips_unfinished(art, tmp_path):
    root = art["grid"].parent.parent
    entries = {e.name: e for e in find_bundles(root)}
    assert set(entries) == {"runs/tiny-trivia", "runs/tiny-nogrid", "grids/tiny-trivia",
                            "grids/tiny-trivia-seed1"}
    grid = entries["grids/tiny-trivia"]
    assert (grid.kind, grid.model, grid.dataset, grid.examples) == ("grid", "tiny-llama",
                                                                     "triviaqa", "60")
    assert grid.best.startswith("0.8") and "exact_answer" in grid.best
    assert entries["runs/tiny-trivia"].accuracy == "66.7%"
    assert entries["grids/tiny-trivia"].date == "2025-01-15 12:00"
    # unfinished, temporary and broken folders
    (tmp_path / "x.partial").mkdir()
    (tmp_path / "x.partial" / "manifest.json").write_text("{}")
    (tmp_path / ".y.tmp-1").mkdir()
    (tmp_path / ".y.tmp-1" / "manifest.json").write_text("{}")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "manifest.json").write_text("{not json")
    found = find_bundles(tmp_path)
    assert [e.name for e in found] == ["broken"]
    assert found[0].kind == "error" and "invalid JSON" in found[0].error
    assert find_bundles(tmp_path / "broken" / "nothing") == []


def test_diff_is_a_minus_b_on_shared_cells(art, tmp_path):
    a, b = GridModel(open_grid(art["grid"])), GridModel(open_grid(art["grid_b"]))
    d = diff_values(a, b, "auc")
    expected = np.asarray(a.values("auc")) - np.asarray(b.values("auc"))
    assert np.allclose(d, expected, equal_nan=True)
    fewer = GridModel(open_grid(make_grid(tmp_path / "g", layers=8, positions=POSITIONS[:3])))
    d = diff_values(a, fewer, "auc")
    assert np.isnan(d[8:]).all() and np.isnan(d[:, 3:]).all()
    assert not np.isnan(d[2:8, :3]).any()


def test_cell_detail_reads_examples_from_the_run(art):
    model = GridModel(open_grid(art["grid"]))
    detail = cell_detail(model, 12, 5, k=3)
    assert (detail.layer, detail.position) == (12, "exact_answer_last")
    assert detail.intervals["auc"][0] < detail.values["auc"] < detail.intervals["auc"][1]
    assert detail.counts["n_test"] == 20 and detail.counts["n_test_pos"] == 6
    assert len(detail.highest) == 3 and len(detail.lowest) == 3
    assert detail.highest[0].score >= detail.highest[-1].score >= detail.lowest[0].score
    assert all("#" in ex.question for ex in detail.highest)
    nan_detail = cell_detail(model, 0, 3)
    assert nan_detail.reason == "only one class among the test examples"


def test_cell_detail_says_why_examples_are_missing(art, tmp_path):
    grid = make_grid(tmp_path / "g", run=None)
    detail = cell_detail(GridModel(open_grid(grid)), 1, 1)
    assert not detail.highest and "run bundle not found" in detail.examples_note


# -- Pilot: the heatmap ---------------------------------------------------------------------

@pilot_test
async def test_navigation_keys_move_the_cursor(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        view = app.screen.query_one(HeatmapView)
        await pilot.press("j", "j", "down", "l", "right")
        assert (view.cursor_row, view.cursor_col) == (3, 2)
        assert "L3 · second_answer · auc" in status(app)
        await pilot.press("k", "h")
        assert (view.cursor_row, view.cursor_col) == (2, 1)
        await pilot.press("G")
        assert view.cursor_row == 31 and view.scroll_y > 0
        assert "31 " in screen_text(app)
        await pilot.press("g", "end")
        assert (view.cursor_row, view.cursor_col) == (0, 14)
        await pilot.press("home", "pagedown")
        assert view.cursor_col == 0 and view.cursor_row > 10
        await pilot.press("pageup")
        assert view.cursor_row == 0


@pilot_test
async def test_jump_to_layer_and_position(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        view = app.screen.query_one(HeatmapView)
        await pilot.press("slash", *"14", "enter")
        assert view.cursor_row == 14
        await answer_prompt(pilot, "slash", "exact_answer_l")
        assert view.cursor_col == POSITIONS.index("exact_answer_last")
        await pilot.press("slash", "minus", "1", "enter")
        assert view.cursor_col == POSITIONS.index("-1")
        await answer_prompt(pilot, "slash", "zzz")
        assert (view.cursor_row, view.cursor_col) == (14, 14)
        assert any("no layer or position" in n.message for n in app._notifications)


@pilot_test
async def test_enter_opens_cell_detail_with_examples(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=(120, 50)) as pilot:
        await answer_prompt(pilot, "slash", "12")
        await answer_prompt(pilot, "slash", "_last")
        await pilot.press("enter")
        assert app.screen.id == "detail"
        text = screen_text(app)
        assert "Layer 12 · exact_answer_last" in text
        assert "test n 20: 6 incorrect" in text
        assert "Highest error scores" in text and "(#" in text
        await pilot.press("escape")
        assert isinstance(app.screen, HeatmapScreen)
        await pilot.press("g")
        await answer_prompt(pilot, "slash", "bef")
        await pilot.press("enter")
        assert "no probe: only one class" in screen_text(app)


@pilot_test
async def test_values_metric_and_range_keys(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        view = screen.query_one(HeatmapView)
        await pilot.press("n")
        first = f"{screen.state.model.values('auc')[0, 0] * 100:.0f}"
        assert first in view.render_line(1).text
        await pilot.press("m")
        assert screen.state.metric == "accuracy" and "accuracy" in status(app)
        await pilot.press("m", "left_square_bracket", "left_square_bracket",
                          "right_curly_bracket")
        assert screen.state.metric == "auc"
        assert view.frame.vmin == pytest.approx(0.4) and view.frame.vmax == pytest.approx(1.05)
        assert "range 0.40-1.05" in screen_text(app)


@pilot_test
async def test_best_cell_and_nan_cells_are_drawn(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = app.screen.query_one(HeatmapView)
        best = view.frame.best
        assert best is not None
        assert "★" in view.render_line(1 + best[0]).text
        assert "╱╱╱" in view.render_line(1).text  # layer 0, exact_answer_before_first


@pilot_test
async def test_region_is_marked_drawn_and_kept_for_export(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        view = screen.query_one(HeatmapView)
        await pilot.press("j", "l", "r", "j", "j", "l", "l")
        assert view.anchor == (1, 1) and "other corner" in status(app)
        await pilot.press("r")
        assert screen.state.regions == [(1, 3, 1, 3)] and view.anchor is None
        assert "│" in view.render_line(1 + 2).text
        args = screen.export_arguments()
        assert args["highlights"] == ((1, 3, "first_answer", "exact_answer_before_first"),)
        assert args["metric"] == "auc" and (args["vmin"], args["vmax"]) == (0.5, 1.0)
        await pilot.press("x")
        assert screen.state.regions == []


@pilot_test
async def test_diff_against_another_open_grid(art):
    app = ViewerApp([art["grid"], art["grid_b"]])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("d")
        assert isinstance(app.screen, PickScreen)
        await pilot.press("enter")
        assert screen.state.diff is not None
        view = screen.query_one(HeatmapView)
        a, b = GridModel(open_grid(art["grid"])), GridModel(open_grid(art["grid_b"]))
        assert np.allclose(view.frame.values, np.asarray(a.values("auc")) - np.asarray(b.values("auc")), equal_nan=True)
        assert view.frame.ramp == "RdBu_r" and view.frame.vmin == -view.frame.vmax
        assert "A-B" in status(app) and "diff vs" in screen_text(app)
        assert screen.export_arguments()["diff"].path == b.grid.path
        await pilot.press("d")
        assert screen.state.diff is None and view.frame.ramp == "Blues"


@pilot_test
async def test_tabs_keep_their_own_state(art):
    app = ViewerApp([art["grid"], art["grid_b"]])
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await pilot.press("j", "j", "n")
        await pilot.click("#grid-1")
        assert screen.active == 1 and screen.query_one(HeatmapView).cursor_row == 0
        assert not screen.state.show_values
        await pilot.click("#grid-0")
        assert screen.query_one(HeatmapView).cursor_row == 2 and screen.state.show_values


@pilot_test
async def test_diff_with_nothing_to_compare_says_so(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("d")
        assert isinstance(app.screen, HeatmapScreen)
        assert any("no other grid" in n.message for n in app._notifications)


@pilot_test
async def test_mouse_hover_shows_and_click_selects_a_cell(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        view = app.screen.query_one(HeatmapView)
        x = view.label_width + 2 * view.cell_width + 1  # inside column 2
        await pilot.hover(HeatmapView, offset=(x, 1 + 5))
        assert "L5 · second_answer" in status(app)
        assert (view.cursor_row, view.cursor_col) == (0, 0)
        await pilot.click(HeatmapView, offset=(x, 1 + 5))
        assert (view.cursor_row, view.cursor_col) == (5, 2)
        await pilot.click(HeatmapView, offset=(x, 1 + 5))
        assert app.screen.id == "detail"


@pilot_test
async def test_large_grid_scrolls_to_the_cursor(tmp_path):
    positions = [f"p{i}" for i in range(512)]
    grid = make_grid(tmp_path / "big", layers=80, positions=positions, nan_cells=(),
                     n_records=30)
    app = ViewerApp([grid])
    async with app.run_test(size=(80, 24)) as pilot:
        view = app.screen.query_one(HeatmapView)
        await pilot.press("end", "G")
        assert (view.cursor_row, view.cursor_col) == (79, 511)
        assert view.scroll_x > 1000 and view.scroll_y > 50
        assert "p511" in status(app) and "79 " in screen_text(app)
        assert view.cell_width == 4  # narrowest cells: 512 columns cannot fit


@pilot_test
async def test_no_color_falls_back_to_shade_glyphs(art, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        view = app.screen.query_one(HeatmapView)
        assert app.no_color
        line = view.render_line(1 + 12).text
        assert set(line) & set("░▒▓█")


@pilot_test
async def test_export_writes_the_current_view(art, tmp_path):
    out = tmp_path / "view.png"
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r", "j", "j", "l", "r")
        await answer_prompt(pilot, "e", str(out))
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert any(f"wrote {out}" in n.message for n in app._notifications)


# -- baselines, controls and significance ---------------------------------------------------

@pytest.fixture(scope="module")
def evidence(tmp_path_factory) -> dict[str, Path]:
    from probeheat.probe.grid import make_grid as probe_grid
    from probeheat.synthetic import write_synthetic_run

    root = tmp_path_factory.mktemp("evidence")
    run = write_synthetic_run(root / "run", n=240, n_layers=5, hidden=8, baselines=True)
    return {"grid": probe_grid(run, root / "grid", seeds=(0, 1), progress=False),
            "paper": probe_grid(run, root / "paper", seeds=(0, 1), preset="paper",
                                progress=False)}


@pilot_test
async def test_the_baseline_strip_shows_what_a_cell_must_beat(evidence):
    app = ViewerApp([evidence["grid"]])
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        strip = app.screen.query_one("BaselineStrip")
        text = str(strip.render())
        assert strip.display and "Baselines (AUC)" in text and "(log)prob_max_all" in text
        assert "null p95" in text and "layer 0" in text
        assert "over seeds" in status(app)  # two seeds: the spread is shown with the value
        await pilot.press("b")
        assert not strip.display
    async with ViewerApp([evidence["grid"]]).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert not pilot.app.screen.query_one("BaselineStrip").display  # the grid needs it


@pilot_test
async def test_gain_metrics_and_paired_tests_in_the_detail(evidence):
    app = ViewerApp([evidence["grid"]])
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("m", "m")
        assert app.screen.state.metric == "gain_layer0" and "±0.25" in str(
            app.screen.query_one("#title").render())
        await pilot.press("j", "j", "enter")
        text = screen_text(app)
        assert "vs best baseline" in text and "vs layer 0" in text and "paired DeLong p" in text


@pilot_test
async def test_a_diff_marks_the_cells_that_do_not_differ_significantly(evidence):
    app = ViewerApp([evidence["grid"], evidence["paper"]])
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("d", "enter")
        await pilot.pause()
        frame = app.screen.view.frame
        assert frame.diff and frame.faded is not None and frame.faded.any()
        tests = app.screen.state.model.comparison(app.screen.state.diff)
        assert tests.paired and np.array_equal(frame.faded, tests.not_significant())
        assert "paired DeLong" in status(app)
