"""Packaging: every package folder ships, and the viewer is installed as probeheat.tui only."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "probeheat").rglob("__init__.py")}
    found.add("probeheat.tui")
    assert found <= listed, f"not shipped in wheels: {sorted(found - listed)}"
    assert config["package-dir"]["probeheat.tui"] == "tui"
    assert "tui" not in listed, "the viewer must not claim the top-level module name 'tui'"


def test_viewer_imports_as_probeheat_tui():
    import probeheat.tui

    assert Path(probeheat.tui.__file__).parent == REPO / "tui"
