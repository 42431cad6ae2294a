"""The viewer's run page and the runs still being written (``NAME.partial``), via Pilot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from probeheat.tui import browser as browser_module
from probeheat.tui import run_screen as run_module
from probeheat.tui.app import ViewerApp
from probeheat.tui.browser import BrowserScreen
from probeheat.tui.heatmap_screen import HeatmapScreen
from probeheat.tui.run_screen import RunScreen
from probeheat.tui.runinfo import RunInfo, read_partial, reason_kind, wilson
from probeheat.tui.screens import MessageScreen
from tui_fixtures import (
    NO_SPAN,
    POSITIONS,
    SIZE,
    make_artifacts,
    make_grid,
    make_record,
    pilot_test,
    screen_text,
    status,
)

from probeheat.bundle import RunWriter, open_run


@pytest.fixture(scope="module")
def art(tmp_path_factory) -> dict[str, Path]:
    return make_artifacts(tmp_path_factory.mktemp("artifacts"))


def examples(app) -> int:
    return app.screen.query_one("#run-examples").row_count


# -- numbers ----------------------------------------------------------------------------------

def test_wilson_interval_matches_a_reference():
    # scipy.stats.binomtest(k, n).proportion_ci(method="wilson")
    assert wilson(40, 60) == pytest.approx((0.5405686645, 0.7727073848))
    assert wilson(173, 600) == pytest.approx((0.2535244429, 0.3258353439))
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775327999))
    assert all(np.isnan(wilson(0, 0)))


def test_run_summary_counts_categories_and_missing_reasons(art):
    info = RunInfo.from_bundle(open_run(art["run"]))
    assert (info.n, info.n_correct) == (60, 40)
    assert info.categories()[0] == ("science", 20, 10)
    assert ("history", 10, 0) in info.categories() and ("art", 10, 10) in info.categories()
    assert info.missing_reasons() == [("no short answer in the first sentence", 5)]
    assert len(info.examples("wrong")) == 20 and len(info.examples("correct")) == 40
    assert [r["index"] for r in info.examples("no exact answer")] == [0, 12, 24, 36, 48]
    assert [r["index"] for r in info.examples("all", "NIGHT watch? (#5)")] == [5]
    assert reason_kind("no exact answer: extractor's 'Paris' is not in the answer") \
        == "extractor's … is not in the answer"


# -- the run page -----------------------------------------------------------------------------

@pilot_test
async def test_run_page_shows_accuracy_categories_and_reasons(art):
    app = ViewerApp([art["run"]], root=art["run"].parent.parent)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen)
        text = screen_text(app)
        assert "tiny-llama" in text and "triviaqa" in text
        assert "accuracy 66.7% of n 60 (40 correct), 95% interval 54.1%–77.3%" in text
        assert "science     20       50%" in text and "history     10        0%" in text
        assert "5  no short answer in the first sentence" in text
        assert "This run has no grid yet" not in text


@pilot_test
async def test_run_page_filters_examples_by_verdict_span_and_text(art):
    app = ViewerApp([art["run"]], root=art["run"].parent.parent)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert examples(app) == 60
        await pilot.press("f")
        assert app.screen.kind == "correct" and examples(app) == 40
        await pilot.press("f")
        assert examples(app) == 20 and "wrong answer 3" in screen_text(app)
        await pilot.press("f")
        assert examples(app) == 5 and "[no exact answer]" in screen_text(app)
        await pilot.press("f", "slash", "q", "f")  # the search box takes q and f as text
        search = app.screen.query_one("#run-search")
        assert isinstance(app.screen, RunScreen) and app.screen.kind == "all"
        assert search.value == "qf" and examples(app) == 0
        await pilot.press("backspace", "backspace", *"middlemarch")
        assert examples(app) == 10
        search.value = "(#7)"
        await pilot.press("enter")
        assert examples(app) == 1 and app.screen.focused.id == "run-examples"
        await pilot.press("enter")  # the one example, in full
        assert app.screen.id == "example"
        assert "Who wrote the novel Middlemarch? (#7)" in screen_text(app)
        await pilot.press("escape", "c")
        assert examples(app) == 60 and app.screen.query_one("#run-search").value == ""


@pilot_test
async def test_run_page_lists_its_grids_and_enter_opens_one(art, tmp_path):
    other = make_grid(tmp_path / "unrelated-grid")  # names no run: not listed
    assert other.exists()
    app = ViewerApp([art["run"]], root=art["run"].parent.parent)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert [g.label for g in screen.grids] == ["tiny-trivia", "tiny-trivia-seed1"]
        text = screen_text(app)
        assert "Grids made from this run (2" in text and "tiny-trivia-seed1" in text
        assert screen.focused.id == "run-grids"
        await pilot.press("down", "enter")
        assert isinstance(app.screen, HeatmapScreen)
        assert app.screen.state.model.grid.path == art["grid_b"]
        await pilot.press("escape")
        assert app.screen is screen


@pilot_test
async def test_run_page_finds_grids_beside_the_run_without_the_artifacts_root(art, tmp_path):
    # runs/X finds grids/Y one folder up, whatever the viewer's root
    app = ViewerApp([art["run"]], root=tmp_path / "elsewhere")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert len(app.screen.grids) == 2


@pilot_test
async def test_browser_opens_a_run_as_its_run_page(art):
    app = ViewerApp([art["run"].parent.parent])
    async with app.run_test(size=SIZE) as pilot:
        names = [e.name for e in app.screen.entries]
        await pilot.press(*["down"] * names.index("runs/tiny-trivia"), "enter")
        assert isinstance(app.screen, RunScreen) and len(app.screen.grids) == 2
        await pilot.press("escape")
        assert isinstance(app.screen, BrowserScreen)


# -- runs still being written -----------------------------------------------------------------

def start_partial(out: Path, total: int = 30) -> RunWriter:
    meta = {"fingerprint": "partial-test", "positions": POSITIONS, "layers": [0, 1],
            "sites": {"resid": [0, 1]}, "hidden_size": 4, "dtype": "float32",
            "model": {"model_id": "tiny-llama"}, "created": "2025-01-15T12:00:00+00:00",
            "dataset": {"name": "triviaqa", "n_rows": total}}
    return RunWriter(out, meta)


def add_rows(writer: RunWriter, start: int, n: int) -> None:
    records = [make_record(i) for i in range(start, start + n)]
    mask = np.array([[p in r["positions"] for p in POSITIONS] for r in records])
    tensors = {f"resid.{k}": np.zeros((n, len(POSITIONS), 4), np.float32) for k in (0, 1)}
    writer.add_shard(records, tensors, mask)


@pytest.fixture
def fast_refresh(monkeypatch):
    monkeypatch.setattr(browser_module, "REFRESH_S", 0.05)
    monkeypatch.setattr(run_module, "REFRESH_S", 0.05)


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    """Let the app run until condition() holds (the viewer refreshes on its own)."""
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("the screen never changed")


@pilot_test
async def test_browser_lists_a_partial_run_and_follows_it_as_it_grows(tmp_path, fast_refresh):
    writer = start_partial(tmp_path / "runs" / "growing")
    add_rows(writer, 0, 10)
    app = ViewerApp([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        entry = app.screen.entries[0]
        assert (entry.kind, entry.name) == ("partial", "runs/growing.partial")
        assert "10/30 (33%)" in screen_text(app) and "running" in status(app)
        add_rows(writer, 10, 10)
        await wait_for(pilot, lambda: "20/30 (67%)" in screen_text(app))
        writer.close()  # the writer stops: its lock goes
        await wait_for(pilot, lambda: "stopped" in screen_text(app))
        for i in range(20, 30):
            add_rows(writer, i, 1)
        writer.finalize()  # renamed into place: the browser shows the finished run
        await wait_for(pilot, lambda: app.screen.entries[0].kind == "run")
        assert "runs/growing " in screen_text(app) and "30/30" not in screen_text(app)


@pilot_test
async def test_a_partial_run_opens_as_a_run_page_that_grows(tmp_path, fast_refresh):
    writer = start_partial(tmp_path / "growing")
    add_rows(writer, 0, 12)
    app = ViewerApp([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("enter")
        assert isinstance(app.screen, RunScreen) and app.screen.info.partial
        text = screen_text(app)
        assert "still being written" in text and "12/30 (40%) rows, running" in text
        assert examples(app) == 12
        add_rows(writer, 12, 6)
        await wait_for(pilot, lambda: examples(app) == 18)
        for i in range(18, 30):
            add_rows(writer, i, 1)
        writer.finalize()
        await wait_for(pilot, lambda: not app.screen.info.partial)
        assert app.screen.run.n_examples == 30 and examples(app) == 30


def test_half_written_partials_never_raise(tmp_path):
    empty = tmp_path / "empty.partial"
    empty.mkdir()
    with pytest.raises(Exception, match="nothing readable yet"):
        read_partial(empty)
    writer = start_partial(tmp_path / "torn")
    add_rows(writer, 0, 5)
    shards = writer.partial / "shards"
    (shards / "shard-r000-00001.json").write_text('{"records": [{"index": 5, "id"')  # torn
    (shards / "shard-r000-00002.safetensors").write_bytes(b"\0" * 10)  # tensors only
    info = read_partial(writer.partial)
    assert info.n == 5 and len(info.progress.problems) == 1
    (writer.partial / "run.json").write_text("{")
    with pytest.raises(Exception, match="nothing readable yet"):
        read_partial(writer.partial)
    writer.close()


@pilot_test
async def test_a_partial_with_nothing_readable_says_so(tmp_path):
    (tmp_path / "new.partial").mkdir()
    app = ViewerApp([tmp_path])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert app.screen.entries[0].kind == "partial"
        assert "nothing readable yet" in status(app)
        await pilot.press("enter")
        assert isinstance(app.screen, BrowserScreen)
        assert any("nothing readable yet" in n.message for n in app._notifications)
    app = ViewerApp([tmp_path / "new.partial"])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, MessageScreen)
        assert "nothing readable yet" in app.screen.lines[0]


@pilot_test
async def test_view_of_a_partial_path_opens_its_run_page(tmp_path):
    from probeheat.commands.view import check_paths

    writer = start_partial(tmp_path / "direct")
    add_rows(writer, 0, 3)
    check_paths([writer.partial])  # not refused as a bundle without a manifest
    app = ViewerApp([writer.partial])
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.info.n == 3
        assert NO_SPAN.split(": ")[1].split(" (")[0] in screen_text(app)
    writer.close()
