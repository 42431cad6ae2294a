"""The viewer's browser, bad input, small terminals, bindings and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from probeheat.tui.app import ViewerApp
from probeheat.tui.browser import BrowserScreen
from probeheat.tui.heatmap import HeatmapView
from probeheat.tui.heatmap_screen import HeatmapScreen
from probeheat.tui.run_screen import RunScreen
from probeheat.tui.screens import MessageScreen, PickScreen, TooSmallScreen
from tui_fixtures import SIZE, make_artifacts, make_grid, pilot_test, screen_text, status

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


def test_view_command_refuses_a_metric_no_grid_has(art, capsys):
    # a metric only some grids have opens (a note names the others: the test above); one
    # that none has is a typo: one line before the full-screen app starts, as export does
    assert probeheat_main(["view", "--metric", "aucc", str(art["grid"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no grid given has the metric 'aucc'" in err
    assert "use one of" in err and "auc" in err


# -- keys: one table for the bindings, the ? screen and --help --------------------------------

@pilot_test
async def test_help_shows_keys_as_typed(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=(120, 60)) as pilot:
        await pilot.press("question_mark")
        assert app.screen.id == "help"
        lines = screen_text(app).splitlines()
        text = "\n".join(lines)
        assert "left square bracket" not in text and "question mark" not in text
        assert "slash" not in text
        for key, what in [("[", "Lower the colour range's start"), ("}", "Raise the colour "
                          "range's end"), ("/", "Go to a layer"), ("?", "Help"), ("← h", "Left"),
                          ("pgdn", "Page down"), ("^p", "Command palette")]:
            assert any(f" {key}  " in line and what in line for line in lines), (key, what)


@pilot_test
async def test_every_screen_has_help_and_its_keys_listed(art):
    from probeheat.tui.keys import BROWSER, RUN

    for path, keys in ((art["grid"].parent.parent, BROWSER), (art["run"], RUN)):
        app = ViewerApp([path])
        async with app.run_test(size=(120, 50)) as pilot:
            await pilot.pause()
            await pilot.press("question_mark")
            assert app.screen.id == "help", path
            text = screen_text(app)
            for key in keys:  # hidden from the footer or not, every key is on the ? screen
                assert key.text in text, key


def footer_text(app) -> str:
    return screen_text(app).splitlines()[-1]


@pilot_test
async def test_the_footer_keeps_help_and_quit_at_80_columns(art, tmp_path):
    for paths in ([art["grid"].parent.parent], [art["grid"]], [art["grid"], art["grid_b"]],
                  [art["run"]], [tmp_path / "nothing-here"]):
        app = ViewerApp(paths)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            footer = footer_text(app)
            assert "? Help" in footer and "q Quit" in footer, (paths, footer)
            if paths == [art["grid"]]:
                await pilot.press("tab")  # focus elsewhere: the footer still has both
                assert "? Help" in footer_text(app) and "q Quit" in footer_text(app)


def test_key_names_for_help_match_textual():
    from probeheat.tui import keys
    from textual.app import App
    from textual.binding import Binding

    app = App()
    names = {k.strip() for group in (keys.HEATMAP_VIEW, keys.HEATMAP, keys.BROWSER, keys.RUN,
                                     keys.MESSAGE, keys.TEXT, keys.APP)
             for key in group for k in key.keys.split(",")}
    names |= {k for k, _ in keys.EVERYWHERE}
    for name in names:
        assert keys.key_display(name) == app.get_key_display(Binding(name, "x")), name
    assert keys.key_display("left_square_bracket") == "["


def test_view_help_lists_the_keys(capsys):
    from probeheat.tui.keys import HEATMAP, RUN

    with pytest.raises(SystemExit):
        probeheat_main(["view", "--help"])
    out = capsys.readouterr().out
    assert "keys (the ? screen" in out and "left_square_bracket" not in out
    lines = out.splitlines()
    assert any(line.split()[:1] == ["["] and "Lower the colour range's start" in line
               for line in lines)
    assert any(line.split()[:1] == ["f"] and "Show all examples" in line for line in lines)
    for key in HEATMAP + RUN:
        assert key.text.split()[0] in out
    assert "run page:" in out and "browser:" in out


def test_view_command_module_imports_no_textual():
    import subprocess
    import sys

    code = ("import sys; from probeheat.cli import build_parser; build_parser(); "
            "print([m for m in sys.modules if m.split('.')[0] == 'textual'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


# -- the cell detail --------------------------------------------------------------------------

@pilot_test
async def test_detail_labels_log_odds_and_uses_the_whole_width(tmp_path):
    from tui_fixtures import POSITIONS, make_record, pinned_dates

    from probeheat.bundle import RunWriter

    long = "a long answer that names {} and then goes on to explain why for a while longer"
    records = [make_record(i) for i in range(60)]
    for r in records:
        r["answer"] = long.format(r["index"])
        r["positions"] = {p: 5 for p in POSITIONS}
        r["missing"], r["exact_span"], r["exact_answer"] = {}, [0, 0], "x"
    meta = {"fingerprint": "long", "positions": POSITIONS, "layers": [0, 1],
            "sites": {"resid": [0, 1]}, "hidden_size": 4, "dtype": "float32"}
    with pinned_dates():
        writer = RunWriter(tmp_path / "run", meta)
        writer.add_shard(records, {f"resid.{k}": np.zeros((60, 15, 4), np.float32)
                                   for k in (0, 1)}, np.ones((60, 15), bool))
        run = writer.finalize()
    grid = make_grid(tmp_path / "grid", run=run, layers=2)
    app = ViewerApp([grid])
    async with app.run_test(size=(200, 50)) as pilot:
        await pilot.press("j", "enter")
        assert app.screen.id == "detail"
        text = screen_text(app)
        assert "log-odds" in text and "Highest error scores (log-odds" in text
        shown = [line for line in text.splitlines() if "a long answer that names" in line]
        assert len(shown) == 10  # five highest and five lowest
        assert all("goes on to explain why for a while longer" in line for line in shown)
