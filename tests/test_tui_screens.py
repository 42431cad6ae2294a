"""The viewer's browser, bad input, small terminals, bindings and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from probeheat.tui.app import ViewerApp
from probeheat.tui.browser import BrowserScreen
from probeheat.tui.heatmap import HeatmapView
from probeheat.tui.heatmap_screen import HeatmapScreen
from probeheat.tui.screens import MessageScreen, PickScreen, RunScreen, TooSmallScreen
from tui_fixtures import SIZE, make_artifacts, pilot_test, screen_text, status

from probeheat.cli import main as probeheat_main


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    return make_artifacts(tmp_path_factory.mktemp("artifacts"))


# -- Pilot: the browser and bad input -------------------------------------------------------

@pilot_test
async def test_browser_lists_bundles_and_opens_a_grid(art):
    root = art["grid"].parent.parent
    app = ViewerApp([root])
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, BrowserScreen)
        text = screen_text(app)
        assert "grids/tiny-trivia" in text and "runs/tiny-nogrid" in text
        names = [e.name for e in app.screen.entries]
        await pilot.press(*["down"] * names.index("grids/tiny-trivia"), "enter")
        assert isinstance(app.screen, HeatmapScreen)
        await pilot.press("d")  # the browser's other grids are on offer for a diff
        assert isinstance(app.screen, PickScreen)
        await pilot.press("escape", "escape")
        assert isinstance(app.screen, BrowserScreen)
        await pilot.press("home", *["down"] * names.index("runs/tiny-nogrid"), "enter")
        assert isinstance(app.screen, RunScreen)
        assert "probeheat probe" in screen_text(app)


@pilot_test
async def test_browser_marks_grids_to_open_as_tabs(art):
    app = ViewerApp([art["grid"].parent.parent])
    async with app.run_test(size=SIZE) as pilot:
        names = [e.name for e in app.screen.entries]
        first = names.index("grids/tiny-trivia")
        await pilot.press(*["down"] * first, "space", "space", "o")
        assert isinstance(app.screen, HeatmapScreen) and len(app.screen.states) == 2


@pilot_test
async def test_empty_folder_says_how_to_make_bundles(tmp_path):
    app = ViewerApp([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "no bundles under" in status(app)
        await pilot.press("enter")  # nothing to open: no crash
        assert isinstance(app.screen, BrowserScreen)


@pilot_test
async def test_bad_paths_become_messages(art, tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "manifest.json").write_text(json.dumps({"kind": "grid"}))
    for path, expected in [(tmp_path / "notes.txt", "not a bundle"),
                           (corrupt, "corrupt"),
                           (tmp_path / "missing", "no such")]:
        app = ViewerApp([path, art["grid"]] if path == corrupt else [path])
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            screen = app.screen if path != corrupt else app.screen_stack[-2]
            assert isinstance(screen, MessageScreen), path
            assert expected in screen.lines[0], screen.lines
    app = ViewerApp([], root=tmp_path / "nope")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, MessageScreen)


@pilot_test
async def test_run_bundle_without_grid_shows_how_to_make_one(art):
    app = ViewerApp([art["run_only"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        assert f"probeheat probe {art['run_only']} --out GRID" in screen_text(app)


@pilot_test
async def test_small_terminal_asks_for_80x24(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        assert "at least 80x24" in screen_text(app)
        await pilot.resize_terminal(80, 24)
        await pilot.pause()
        assert isinstance(app.screen, HeatmapScreen)


@pilot_test
async def test_every_binding_has_an_id_and_description():
    from probeheat.tui.commands import _described_bindings

    for owner in (HeatmapView, HeatmapScreen, BrowserScreen, MessageScreen, RunScreen):
        for binding in owner.BINDINGS:
            assert binding.id and binding.description, (owner, binding)
    assert HeatmapScreen.COMMANDS and BrowserScreen.COMMANDS
    app = ViewerApp([Path("unused")])
    async with app.run_test(size=SIZE):
        screen = HeatmapScreen([])
        screen.focused = HeatmapView()
        names = {d for d, *_ in _described_bindings(screen)}
    assert {"Jump", "Diff", "Export", "Region", "Detail", "Values", "Metric"} <= names


@pilot_test
async def test_command_palette_lists_the_heatmap_actions(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p", *"values")
        await pilot.pause(0.3)
        assert "Show or hide the value" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, HeatmapScreen) and app.screen.state.show_values


@pilot_test
async def test_unknown_metric_is_reported_not_silently_replaced(art):
    app = ViewerApp([art["grid"]], metric="f1")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.state.metric == "auc"
        assert any("no metric 'f1'" in n.message for n in app._notifications)


def test_view_command_refuses_an_empty_colour_range(capsys):
    assert probeheat_main(["view", "--vmin", "0.9", "--vmax", "0.5"]) == 2
    assert "--vmin" in capsys.readouterr().err
