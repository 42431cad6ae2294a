"""What the viewer's start-up work must not break: the KeyBar footer (clicks, tooltips,
focus, themes, 80 columns), the heatmap's row cache across style updates and resizes,
the first screen as the app's default screen, the bundle package's lazily loaded names,
and the collector paused by `probeheat view` (Pilot, and in-process calls)."""

from __future__ import annotations

import argparse
import gc
import json
from pathlib import Path

import pytest
from probeheat.tui.app import ViewerApp
from probeheat.tui.detail_screen import DetailScreen
from probeheat.tui.heatmap_screen import HeatmapScreen
from probeheat.tui.keybar import KeyBar
from probeheat.tui.run_screen import RunScreen
from probeheat.tui.screens import MessageScreen, PromptScreen, TextScreen
from textual.app import App
from textual.binding import Binding
from textual.command import CommandPalette
from textual.screen import Screen
from textual.widgets import Input, Tabs
from tui_fixtures import make_artifacts, pilot_test, screen_text

from probeheat.commands import view
from probeheat.errors import UserError


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    return make_artifacts(tmp_path_factory.mktemp("artifacts"))


def styled_rows(app) -> list[str]:
    """Every row of the screen but the footer, with each segment's style."""
    strips = app.screen._compositor.render_strips()
    return ["".join(f"[{seg.style}]{seg.text}" for seg in strip) for strip in strips[:-1]]


def styled_footer(app) -> str:
    strip = app.screen._compositor.render_strips()[-1]
    return "".join(f"[{seg.style}]{seg.text}" for seg in strip)


def footer(app) -> str:
    return screen_text(app).splitlines()[-1]


def differing_rows(got: list[str], want: list[str]) -> list[int]:
    return [i for i in range(max(len(got), len(want)))
            if (got[i:i + 1] or [None]) != (want[i:i + 1] or [None])]


async def click_key(pilot, label: str) -> None:
    """Click the footer entry shown as `label` (e.g. "m Metric")."""
    x = footer(pilot.app).index(label)
    await pilot.click(KeyBar, offset=(x + 1, 0))
    await pilot.pause()


# -- heatmap: the row cache across style updates --------------------------------------------

async def _tabs_rows(paths, themes: list[str], *, start: str | None = None) -> list[str]:
    """Two grids as tabs: each theme in turn, the focus to the tabs and back in between."""
    app = ViewerApp(paths)
    if start:
        app.theme = start
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        for i, theme in enumerate(themes):
            if i:
                await pilot.press("tab", "tab")  # focus: the tabs, then the grid again
            app.theme = theme
            await pilot.pause()
        if not themes:
            await pilot.press("tab", "tab")
        await pilot.pause(0.05)
        return styled_rows(app)


@pilot_test
async def test_theme_change_after_a_focus_move_redraws_the_cursor_labels(art):
    # ansi-dark and ansi-light give HeatmapView the same base style and different component
    # styles ($accent: the cursor's row and column labels). Textual calls
    # notify_style_update before it updates the component classes' styles, so comparing
    # them there (after a focus move that changed nothing) kept the old theme's labels.
    paths = [art["grid"], art["grid_b"]]
    fresh = await _tabs_rows(paths, [], start="ansi-light")
    got = await _tabs_rows(paths, ["ansi-dark", "ansi-light"])
    rows = differing_rows(got, fresh)
    assert rows == [], f"stale rows {rows}: {got[rows[0]][:160]!r} != {fresh[rows[0]][:160]!r}"


@pilot_test
async def test_grid_after_resizes_and_toggles_matches_a_fresh_start(art):
    async def rows(size, steps) -> list[str]:
        app = ViewerApp([art["grid"]])
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            for step in steps:
                if isinstance(step, tuple):
                    await pilot.resize_terminal(*step)
                else:
                    await pilot.press(step)
                await pilot.pause()
            await pilot.pause(0.05)
            return styled_rows(app)

    fresh = await rows((140, 40), ["n", "G", "end"])
    got = await rows((100, 30), ["n", "G", "end", (140, 40), "b", "b", (60, 20), (140, 40),
                                 "r", "escape", "question_mark", "escape"])
    assert differing_rows(got, fresh) == []


# -- the footer --------------------------------------------------------------------------------

@pilot_test
async def test_footer_key_shows_its_help_as_a_tooltip(art):
    # as Textual's Footer did: the binding's help (keys.Key.help) while hovering its key
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=(100, 30), tooltips=True) as pilot:
        await pilot.pause()
        await pilot.hover(KeyBar, offset=(footer(app).index("d Diff") + 1, 0))
        for _ in range(30):  # the tooltip comes after Textual's delay
            await pilot.pause(0.1)
            if "Colour by this grid minus another" in screen_text(app):
                break
        shown = "Colour by this grid minus another" in screen_text(app)
        assert shown, f"no tooltip over 'd Diff' (footer {footer(app)!r})"


@pilot_test
async def test_footer_clicks_press_the_keys(art):
    app = ViewerApp([art["grid"]])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        heatmap = app.screen
        for label, opened in [("⏎ Detail", DetailScreen), ("/ Jump", PromptScreen),
                              ("e Export", PromptScreen), ("? Help", TextScreen),
                              ("^p palette", CommandPalette)]:
            await click_key(pilot, label)
            assert isinstance(app.screen, opened), label
            await pilot.press("escape")
            await pilot.pause()
            assert app.screen is heatmap, label
        await click_key(pilot, "m Metric")
        assert heatmap.state.metric == "accuracy"
        line = footer(app)
        blank = line.index("q Quit") + len("q Quit") + 2
        assert line[blank] == " " and "▏" in line[blank:]
        await pilot.click(KeyBar, offset=(blank, 0))
        await pilot.pause()
        assert app.screen is heatmap and heatmap.state.metric == "accuracy" and app.is_running
        await click_key(pilot, "q Quit")
        assert not app.is_running


class _Switches(Screen):
    BINDINGS = [Binding("a", "one", "One"), Binding("b", "two", "Two")]

    def __init__(self) -> None:
        super().__init__()
        self.ran: list[str] = []
        self.two_enabled = False

    def compose(self):
        yield KeyBar()

    def check_action(self, action: str, parameters) -> bool | None:
        return True if action == "one" or self.two_enabled else None  # None: shown, disabled

    def action_one(self) -> None:
        self.ran.append("one")

    def action_two(self) -> None:
        self.ran.append("two")


class _SwitchesApp(App):
    def get_default_screen(self) -> Screen:
        return _Switches()


def _segment_style(app, text: str):
    strip = app.screen._compositor.render_strips()[-1]
    return next(seg.style for seg in strip if seg.text.strip() == text)


@pilot_test
async def test_footer_dims_a_disabled_key_ignores_its_click_and_follows_refresh_bindings():
    app = _SwitchesApp()
    async with app.run_test(size=(60, 5)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert _segment_style(app, "Two").color != _segment_style(app, "One").color
        await click_key(pilot, "b Two")
        await click_key(pilot, "a One")
        assert screen.ran == ["one"]
        screen.two_enabled = True
        screen.refresh_bindings()
        await pilot.pause()
        assert _segment_style(app, "Two").color == _segment_style(app, "One").color
        await click_key(pilot, "b Two")
        assert screen.ran == ["one", "two"]


@pilot_test
async def test_footer_follows_the_focus(art):
    app = ViewerApp([art["run"]])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and "f Filter" in footer(app)
        await pilot.press("slash")  # the search box takes printable keys: they leave the bar
        await pilot.pause()
        assert isinstance(app.focused, Input)
        assert "f Filter" not in footer(app) and "q Quit" not in footer(app)
        await pilot.press("escape")
        await pilot.pause()
        assert "f Filter" in footer(app) and "q Quit" in footer(app)
    app = ViewerApp([art["grid"], art["grid_b"]])
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "⏎ Detail" in footer(app)  # the grid's own key
        await pilot.press("tab")
        await pilot.pause()
        assert isinstance(app.focused, Tabs) and "⏎ Detail" not in footer(app)
        await pilot.press("tab")
        await pilot.pause()
        assert "⏎ Detail" in footer(app)


@pilot_test
async def test_footer_keeps_help_and_quit_at_80_columns(art):
    for paths, keys in [([art["grid"]], ()), ([art["grid"]], ("enter",)),
                        ([art["grid"].parent.parent], ()), ([art["run"]], ())]:
        app = ViewerApp(paths)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press(*keys)
            await pilot.pause()
            line = footer(app)
            assert "? Help" in line and "q Quit" in line, (paths, keys, line)


@pilot_test
async def test_footer_recolours_with_the_theme(art):
    async def bar(start: str | None, switch: str | None) -> str:
        app = ViewerApp([art["grid"]])
        if start:
            app.theme = start
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            if switch:
                app.theme = switch
                await pilot.pause()
            return styled_footer(app)

    switched = await bar(None, "textual-light")
    assert switched == await bar("textual-light", None)
    assert switched != await bar(None, None)


# -- navigation: the first screen is the bottom of the stack --------------------------------

@pilot_test
async def test_escape_on_the_bottom_screen_keeps_the_viewer_open(art, tmp_path):
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "manifest.json").write_text(json.dumps({"kind": "grid"}))
    for paths, stack in [([art["grid"]], [HeatmapScreen]), ([art["run"]], [RunScreen]),
                         ([damaged, art["grid"], art["grid_b"]], [MessageScreen, HeatmapScreen])]:
        app = ViewerApp(paths)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            assert [type(s) for s in app.screen_stack] == stack
            await pilot.press("escape", "escape", "escape")
            await pilot.pause()
            assert app.is_running and [type(s) for s in app.screen_stack] == stack[:1]


# -- probeheat.bundle: names loaded when first asked for ------------------------------------

LAZY_CHECK = """
import sys
import probeheat.bundle as b
loaded = sorted(m for m in ("run", "selection", "steer", "verify")
                if f"probeheat.bundle.{m}" in sys.modules)
listed = sorted(set(b.__all__) - set(dir(b)))  # before any lazy name was asked for
missing = [name for name in b.__all__ if not hasattr(b, name)]
print(loaded, listed, missing, type(b.open_bundle(sys.argv[1])).__name__)
"""


def test_every_exported_bundle_name_imports_and_is_listed(art):
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", LAZY_CHECK, str(art["run"])],
                         capture_output=True, text=True, check=True).stdout.split()
    # importing the package loads none of the other kinds' modules; dir() (help, pydoc,
    # completion) lists every exported name all the same; each imports; a run opens
    assert out == ["[]", "[]", "[]", "RunBundle"]


# -- `probeheat view`: the collector paused while the viewer loads --------------------------

def _refused_view(tmp_path) -> None:
    args = argparse.Namespace(paths=[str(tmp_path / "missing")], metric=None, vmin=0.5,
                              vmax=1.0, no_verify=False)
    with pytest.raises(UserError, match="no such file"):
        view.run(args)


def test_refused_view_leaves_the_collector_enabled(tmp_path):
    assert gc.isenabled()
    try:
        _refused_view(tmp_path)
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()


def test_refused_view_freezes_nothing(tmp_path):
    gc.unfreeze()
    try:
        _refused_view(tmp_path)
        # a refusal must not keep everything alive (and garbage not yet collected) out of
        # collections for good
        assert gc.get_freeze_count() == 0
    finally:
        gc.unfreeze()


def test_refused_view_keeps_a_disabled_collector_disabled(tmp_path):
    gc.disable()
    try:
        _refused_view(tmp_path)
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()

