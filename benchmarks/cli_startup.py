"""How long `probeheat inspect` and `probeheat verify` take on the sample run bundle.

Baseline in the same run: `python -c "import json, numpy"`, the floor of any command that
reads JSON and numbers (interpreter start plus numpy). Target: inspect <= 2x that. Each
command runs in a fresh process, interleaved with the others, ``--repeat`` times; the
median and the minimum are printed with the ratios. probeheat's bytecode is compiled
first, as an install does (benchmarks/bytecode.py).

    python benchmarks/cli_startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bytecode import compile_project

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "artifacts" / "samples" / "run-synthetic"


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL, env={**os.environ,
                   "COLUMNS": "100"})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    compile_project()
    py = sys.executable
    commands = {
        'python -c "import json, numpy"': [py, "-c", "import json, numpy"],
        "probeheat inspect RUN": [py, "-m", "probeheat.cli", "inspect", str(SAMPLE)],
        "probeheat inspect RUN --json": [py, "-m", "probeheat.cli", "inspect", "--json",
                                         str(SAMPLE)],
        "probeheat verify RUN": [py, "-m", "probeheat.cli", "verify", str(SAMPLE)],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, cmd in commands.items():
            times[name].append(timed(cmd))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; {args.repeat} fresh processes each, interleaved")
    base = statistics.median(times['python -c "import json, numpy"'])
    base_min = min(times['python -c "import json, numpy"'])
    for name, values in times.items():
        med = statistics.median(values)
        print(f"  {name:<32} median {med * 1000:6.0f} ms  min {min(values) * 1000:6.0f} ms   "
              f"{med / base:4.2f}x (min {min(values) / base_min:4.2f}x) the baseline")


if __name__ == "__main__":
    main()
