"""The real `probeheat view` in a terminal (tmux), and what starting the viewer imports."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from tui_fixtures import make_artifacts

HEAVY = ("torch", "transformers", "matplotlib")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "artifacts"
    make_artifacts(root)
    return root


def probeheat_command() -> list[str]:
    script = Path(sys.executable).with_name("probeheat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "probeheat.cli"]


class Tmux:
    """One detached tmux session running a command; read with capture-pane."""

    def __init__(self, command: list[str], cwd: Path, size=(120, 40)):
        self.name = f"probeheat-test-{os.getpid()}-{time.monotonic_ns()}"
        line = f"cd {shlex.quote(str(cwd))} && {shlex.join(command)}; sleep 60"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", str(size[0]),
                        "-y", str(size[1]), line], check=True)

    def screen(self) -> str:
        out = subprocess.run(["tmux", "capture-pane", "-p", "-t", self.name],
                             capture_output=True, text=True)
        return out.stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.05)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.05)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_probeheat_view_in_a_real_terminal(artifacts):
    tmux = Tmux(probeheat_command() + ["view", "artifacts"], cwd=artifacts.parent)
    try:
        screen = tmux.wait_for("grids/tiny-trivia")
        assert "Bundles under artifacts" in screen and "runs/tiny-nogrid" in screen
        tmux.keys("Enter")  # first row: grids/tiny-trivia
        screen = tmux.wait_for("best 0.")
        assert "31 " in screen and "last_q" in screen and "AUC" in screen
        tmux.keys("j", "j", "l")
        tmux.wait_for("L2 · first_answer · auc")
        tmux.keys("Enter")
        screen = tmux.wait_for("Layer 2 · first_answer")
        assert "Highest error scores" in screen
        tmux.keys("Escape")  # alone: Escape then a key quickly reads as alt+key
        deadline = time.monotonic() + 10
        while "Highest error scores" in tmux.screen():
            assert time.monotonic() < deadline, "Escape did not close the detail"
            time.sleep(0.05)
        tmux.keys("n")
        tmux.wait_for("L2 · first_answer")
        tmux.keys("q")
        deadline = time.monotonic() + 10
        while "Bundles under" in tmux.screen() or "best 0." in tmux.screen():
            assert time.monotonic() < deadline, "q did not quit"
            time.sleep(0.05)
    finally:
        tmux.close()


@pytest.mark.parametrize("name", ["notes.txt", "nonexistent"])
def test_bad_path_is_one_line_before_the_app_starts(artifacts, tmp_path, name):
    """Without a terminal too: one line, a non-zero exit, no full-screen app, no hang."""
    (tmp_path / "notes.txt").write_text("not a bundle")
    result = subprocess.run(probeheat_command() + ["view", str(tmp_path / name)],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probeheat view:"), result.stderr
    expected = "bundles are folders holding manifest.json" if name == "notes.txt" \
        else "no such file or folder"
    assert expected in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_starting_the_viewer_imports_no_torch_transformers_or_matplotlib(artifacts):
    script = textwrap.dedent(f"""
        import asyncio, sys
        from pathlib import Path
        import probeheat.commands.view
        assert "textual" not in sys.modules, "the view command module imported textual"
        from probeheat.tui.app import ViewerApp

        async def main():
            app = ViewerApp([Path({str(artifacts / "grids" / "tiny-trivia")!r})])
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.press("j", "enter", "escape", "d", "n")

        asyncio.run(main())
        print(",".join(m for m in {HEAVY!r} if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"the viewer imported {out.stdout.strip()}"
