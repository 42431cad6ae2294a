"""How fast `probeheat view` shows a grid, and how fast it answers a key on a big one.

1. Start-up, measured in a real terminal (tmux 120x40): from launching the command to the
   first full frame of a 32 x 15 grid (the last layer's row label on screen). Baselines in
   the same run and harness: a minimal Textual app that draws one line (the floor any
   Textual viewer pays: interpreter, Textual, the first frame), and `python -c "import
   torch"`, the cost a viewer that imported torch would pay before drawing anything.
2. On an 80 x 512 grid (Pilot, headless 160x50): time to the first frame, and key press to
   repaint for a cursor move and for a colour-range change (which restyles every cell).
   Baseline: the same cells as a Textual DataTable with styled cells (and a Footer).

probeheat's bytecode is compiled first, as an install does (benchmarks/bytecode.py).

    python benchmarks/view_startup.py [--repeat 7] [--keys 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bytecode import compile_project

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


# One tmux server of our own for the whole benchmark, kept alive by a idle session: without
# it the server exits with each timed session and the next start can race its shutdown.
TMUX = ["tmux", "-L", f"probeheat-bench-{os.getpid()}"]


def tmux_time_to(command: str, ready: re.Pattern, cwd: Path, timeout: float = 60.0) -> float:
    """Seconds from starting command in a fresh tmux session until ready matches the screen."""
    name = f"run-{time.monotonic_ns()}"
    line = f"cd {shlex.quote(str(cwd))} && {command}; sleep 30"
    start = time.perf_counter()
    subprocess.run([*TMUX, "new-session", "-d", "-s", name, "-x", "120", "-y", "40", line],
                   check=True)
    try:
        while time.perf_counter() - start < timeout:
            screen = subprocess.run([*TMUX, "capture-pane", "-p", "-t", name],
                                    capture_output=True, text=True).stdout
            if ready.search(screen):
                return time.perf_counter() - start
            time.sleep(0.005)
        raise RuntimeError(f"{command!r}: not ready after {timeout} s:\n{screen}")
    finally:
        subprocess.run([*TMUX, "kill-session", "-t", name], capture_output=True)


def startup(work: Path, repeat: int) -> dict[str, list[float]]:
    from tui_fixtures import make_grid

    grid = make_grid(work / "grid-32x15")
    python = shlex.quote(sys.executable)
    view = f"{python} -m probeheat.cli view {shlex.quote(str(grid))}"
    last_row = re.compile(r"^\s*31(\s|$)", re.M)  # the grid's last layer label: the frame is whole
    torch = f"{python} -c 'import torch; print(\"READY\")'"
    minimal_script = work / "minimal_app.py"
    minimal_script.write_text(MINIMAL_APP)
    minimal = f"{python} {shlex.quote(str(minimal_script))}"
    times: dict[str, list[float]] = {"probeheat view": [], "minimal Textual app": [],
                                     "import torch": []}
    subprocess.run([*TMUX, "new-session", "-d", "-s", "keeper", "sleep 100000"], check=True)
    try:
        for _ in range(repeat):  # interleaved, so that drift in machine load hits all alike
            times["probeheat view"].append(tmux_time_to(view, last_row, work))
            times["minimal Textual app"].append(tmux_time_to(minimal, re.compile("READY"), work))
            times["import torch"].append(tmux_time_to(torch, re.compile("READY"), work))
    finally:
        subprocess.run([*TMUX, "kill-server"], capture_output=True)
    return times


MINIMAL_APP = """
from textual.app import App
from textual.widgets import Static


class Minimal(App):
    def compose(self):
        yield Static("READY")


Minimal().run()
"""


class DataTableApp:
    """The baseline: the same cells as a DataTable, one styled Text per (layer, position)."""

    @staticmethod
    def build(values):
        from probeheat.tui.colors import color_of
        from rich.text import Text
        from textual.app import App
        from textual.binding import Binding
        from textual.widgets import DataTable, Footer

        class Baseline(App):
            BINDINGS = [Binding("left_square_bracket", "range", "Range -")]
            vmin = 0.5

            def compose(self):
                yield DataTable(cursor_type="cell")
                yield Footer()

            def on_mount(self):
                table = self.query_one(DataTable)
                table.add_columns(*[f"p{j}" for j in range(values.shape[1])])
                self.fill(table)
                table.focus()

            def fill(self, table):
                for i, row in enumerate(values):
                    cells = []
                    for v in row:
                        r, g, b = color_of(float(v), self.vmin, 1.0)
                        cells.append(Text(f"{v * 100:.0f}", style=f"on rgb({r},{g},{b})"))
                    table.add_row(*cells, label=str(i))

            def action_range(self):  # a new colour range restyles every cell
                self.vmin -= 0.05
                table = self.query_one(DataTable)
                table.clear()
                self.fill(table)

        return Baseline()


async def time_keys(make_app, keys: list[str]) -> tuple[float, list[float]]:
    """(seconds to the first frame, seconds per key press) under Pilot at 160x50."""
    start = time.perf_counter()
    app = make_app()
    out = []
    async with app.run_test(size=(160, 50)) as pilot:
        await pilot.pause()
        first = time.perf_counter() - start
        for key in keys:
            start = time.perf_counter()
            await pilot.press(key)
            out.append(time.perf_counter() - start)
    return first, out


def key_repaint(work: Path, n_keys: int, n_baseline_keys: int) -> dict[str, dict]:
    from probeheat.tui.app import ViewerApp
    from tui_fixtures import make_grid

    from probeheat.bundle import open_grid

    positions = [f"p{i}" for i in range(512)]
    grid = make_grid(work / "grid-80x512", layers=80, positions=positions, nan_cells=(),
                     n_records=30)
    moves = (["l"] * 5 + ["j"] * 5) * (n_keys // 10 + 1)
    values = open_grid(grid).metric("auc")
    results = {}
    for name, make, n in [("probeheat view", lambda: ViewerApp([grid]), n_keys),
                          ("DataTable", lambda: DataTableApp.build(values), n_baseline_keys)]:
        first, move = asyncio.run(time_keys(make, moves[:n]))
        _, restyle = asyncio.run(time_keys(make, ["left_square_bracket"] * max(2, n // 4)))
        results[name] = {"first frame": [first], "cursor move": move, "colour range": restyle}
    return results


def report(title: str, times: dict[str, list[float]], baseline: str) -> None:
    print(f"\n{title}")
    base = statistics.median(times[baseline])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:<26} first {values[0] * 1000:7.0f} ms   median {med * 1000:7.0f} ms"
              f"   (n={len(values)})   {med / base:5.2f}x {baseline}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="start-ups per command (7)")
    parser.add_argument("--keys", type=int, default=20, help="key presses timed (20)")
    parser.add_argument("--baseline-keys", type=int, default=20,
                        help="key presses timed on the DataTable baseline (20)")
    parser.add_argument("--startup-only", action="store_true",
                        help="time the start-up alone (part 1), not the key presses")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, TERM inside tmux: "
          f"tmux-256color, load average {os.getloadavg()[0]:.1f} (other work on the machine "
          "slows both sides of each ratio alike, the absolute times more)")
    compile_project()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        times = startup(work, args.repeat)
        report("Start-up to the first full frame, 32x15 grid, tmux 120x40 (target: <= 1.5x "
               "the minimal Textual app)", times, "minimal Textual app")
        if args.startup_only:
            return
        keys = key_repaint(work, args.keys, args.baseline_keys)
        for what in ("first frame", "cursor move", "colour range"):
            report(f"80x512 grid, Pilot 160x50: {what}" + (" (key press to repaint)"
                   if what != "first frame" else " (app start to first frame, in process)"),
                   {name: r[what] for name, r in keys.items()}, "DataTable")


if __name__ == "__main__":
    main()
