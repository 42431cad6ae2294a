"""Snapshot (SVG) tests of the viewer's screens at the smallest and a large terminal.

Update after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs in tests/__snapshots__/ before committing them.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from probeheat.tui.app import ViewerApp
from tui_fixtures import make_artifacts


@pytest.fixture
def artifacts(tmp_path, monkeypatch) -> Path:
    """Bundles under ./artifacts, so that no temporary path appears on screen (and run ids,
    which the run page shows, numbered instead of drawn at random)."""
    ids = itertools.count()
    monkeypatch.setattr("probeheat.bundle.run.new_id",
                        lambda kind: f"{kind}-20250115-120000-{next(ids):08d}")
    make_artifacts(tmp_path / "artifacts")
    monkeypatch.chdir(tmp_path)
    return Path("artifacts")


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_browser(snap_compare, artifacts, size):
    assert snap_compare(ViewerApp([artifacts]), terminal_size=size)


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_heatmap(snap_compare, artifacts, size):
    app = ViewerApp([artifacts / "grids" / "tiny-trivia"])
    assert snap_compare(app, terminal_size=size, press=["j", "j", "l", "l"])


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_heatmap_values_and_region(snap_compare, artifacts, size):
    app = ViewerApp([artifacts / "grids" / "tiny-trivia"])
    keys = ["n", "j", "l", "r", "j", "j", "j", "l", "l", "r", "j", "j"]
    assert snap_compare(app, terminal_size=size, press=keys)


def test_heatmap_diff(snap_compare, artifacts):
    grids = artifacts / "grids"
    app = ViewerApp([grids / "tiny-trivia", grids / "tiny-trivia-seed1"])
    assert snap_compare(app, terminal_size=(100, 30), press=["d", "enter"])


def test_too_small(snap_compare, artifacts):
    app = ViewerApp([artifacts / "grids" / "tiny-trivia"])
    assert snap_compare(app, terminal_size=(70, 20))


@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
def test_run_page(snap_compare, artifacts, size):
    app = ViewerApp([artifacts / "runs" / "tiny-trivia"])
    assert snap_compare(app, terminal_size=size)


def test_run_page_wrong_answers(snap_compare, artifacts):
    app = ViewerApp([artifacts / "runs" / "tiny-trivia"])
    assert snap_compare(app, terminal_size=(100, 30), press=["f", "f", "tab", "down"])


def test_help(snap_compare, artifacts):
    app = ViewerApp([artifacts / "grids" / "tiny-trivia"])
    assert snap_compare(app, terminal_size=(80, 24), press=["question_mark"])


def test_head_grid(snap_compare, tmp_path, monkeypatch):
    """A head grid: the heads of the second position (p), values shown, at 80x24."""
    from tui_fixtures import make_head_artifacts

    ids = itertools.count()
    monkeypatch.setattr("probeheat.bundle.run.new_id",
                        lambda kind: f"{kind}-20250115-120000-{next(ids):08d}")
    make_head_artifacts(tmp_path / "artifacts")
    monkeypatch.chdir(tmp_path)
    app = ViewerApp([Path("artifacts") / "grids" / "heads"])
    assert snap_compare(app, terminal_size=(80, 24), press=["p", "n", "j", "l"])
