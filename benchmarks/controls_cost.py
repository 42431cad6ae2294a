"""What the controls cost: the permutation null (K refits at each position's best cell) and
the baselines with their paired tests, against the plain grid on the same run.

The run is a real run bundle (RunWriter) whose hidden states have a planted low-rank
signal (benchmarks/probe_speed.py's PlantedResidualStream), with per-example baseline
inputs. Times, in one process: the plain grid (every cell, one seed); the permutation null
(K = 20 by default, each position's best layer, the Gram matrix shared by the K refits);
the baselines and paired tests. Target: the null costs at most the plain grid (ratio <= 1).

    python benchmarks/controls_cost.py              # 17 layers x 15 positions, n 2000, d 2048
    python benchmarks/controls_cost.py --quick      # 5 x 15, n 600, d 512
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe_speed import PlantedResidualStream  # noqa: E402

from probeheat.bundle import RunWriter, open_run, tensor_name  # noqa: E402
from probeheat.bundle.records import make_record  # noqa: E402
from probeheat.probe.controls import Controls, baseline_table, paired_tests, permutation_null  # noqa: E402
from probeheat.probe.grid import probe_run  # noqa: E402
from probeheat.probe.settings import probe_settings  # noqa: E402
from probeheat.progress import Progress  # noqa: E402
from probeheat.run.positions import BUILTIN_POSITIONS  # noqa: E402


def write_run(out: Path, args) -> Path:
    data = PlantedResidualStream(args.n, len(BUILTIN_POSITIONS), args.d, seed=0)
    rng = np.random.default_rng(1)
    meta = {"fingerprint": "controls-bench", "positions": list(BUILTIN_POSITIONS),
            "layers": list(range(args.layers)), "sites": {"resid": list(range(args.layers))},
            "hidden_size": args.d, "dtype": "float16",
            "baselines": {"token_logprobs": "planted", "p_true": {}, "category_column": "c",
                          "group_column": None}}
    writer = RunWriter(out, meta)
    records = []
    for i in range(args.n):
        wrong = bool(data.y[i])
        lp = np.minimum(rng.normal(-0.6 - 0.3 * wrong, 0.5, 12), 0).round(6).tolist()
        records.append(make_record(
            i, f"q{i}", not wrong, question=f"Question {i}?", gen_len=12, exact_span=[3, 5],
            token_logprobs=lp, p_true={"answer": float(rng.uniform()), "exact_answer": None},
            category=str(i % 4), positions={p: 20 for p in BUILTIN_POSITIONS}, missing={}))
    tensors = {tensor_name("resid", k): data.layer(k, args.layers).astype(np.float16)
               for k in range(args.layers)}
    writer.add_shard(records, tensors, np.ones((args.n, len(BUILTIN_POSITIONS)), bool))
    return writer.finalize({"finished": "now"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=17)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--d", type=int, default=2048)
    parser.add_argument("--permutations", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.layers, args.n, args.d = 5, 600, 512
    with tempfile.TemporaryDirectory() as tmp:
        run = open_run(write_run(Path(tmp) / "run", args))
        settings = probe_settings(permutations=args.permutations)
        t0 = time.perf_counter()
        res = probe_run(run, settings=settings, progress=False)
        grid_s = time.perf_counter() - t0
        out = Controls()
        t0 = time.perf_counter()
        with Progress("null", len(res.positions), mode="quiet") as bar:
            permutation_null(run, res, settings, res.columns, out, bar)
        null_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        scored, names = baseline_table(run, res, settings, out)
        best = int(np.nanargmax(out.tensors["baseline_auc"]))
        paired_tests(res, scored[0][best], settings, out)
        base_s = time.perf_counter() - t0
    cells = len(res.layers) * len(res.positions)
    print(f"run: {args.n} examples, {args.layers} layers x {len(res.positions)} positions, "
          f"d {args.d}; K = {args.permutations}")
    print(f"plain grid ({cells} cells)            {grid_s:8.1f} s")
    print(f"permutation null ({len(res.positions)} cells x {args.permutations})    "
          f"{null_s:8.1f} s   ratio {null_s / grid_s:.2f} (target <= 1)")
    print(f"baselines + paired tests          {base_s:8.1f} s   ratio {base_s / grid_s:.2f}")
    print(f"all controls                      {null_s + base_s:8.1f} s   ratio "
          f"{(null_s + base_s) / grid_s:.2f}")


if __name__ == "__main__":
    main()
