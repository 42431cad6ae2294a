"""Synthetic run bundles with a planted signal, for tests, samples and benchmarks.

No model is involved: labels are drawn at random and the hidden states carry a signal whose
strength depends on (layer, position), peaking in the middle layers at the exact-answer
positions as in the study's figures. Every record says ``"synthetic": true``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .run import RunWriter, tensor_name

SYNTH_POSITIONS = [
    "last_q", "first_answer", "second_answer", "exact_answer_before_first", "exact_answer_first",
    "exact_answer_last", "exact_answer_after_last", "-8", "-7", "-6", "-5", "-4", "-3", "-2", "-1",
]


def signal_strength(layer: int, n_layers: int, position: str) -> float:
    depth = np.exp(-((layer / max(n_layers - 1, 1) - 0.45) ** 2) / 0.06)
    weight = {"exact_answer_last": 1.0, "exact_answer_after_last": 1.0, "exact_answer_first": 0.8,
              "last_q": 0.5}.get(position, 0.35)
    return float(0.05 + 0.7 * weight * depth)


def write_synthetic_run(out: Path, *, n: int = 160, n_layers: int = 17, hidden: int = 8,
                        positions: list[str] | None = None, dtype: str = "float16", seed: int = 0,
                        shard_size: int = 64, overwrite: bool = False,
                        correct_rate: float = 0.4) -> Path:
    positions = list(positions or SYNTH_POSITIONS)
    rng = np.random.default_rng(seed)
    layers = list(range(n_layers))
    correct = rng.random(n) < correct_rate
    direction = rng.standard_normal(hidden)
    direction /= np.linalg.norm(direction)
    np_dtype = {"float32": np.float32, "float16": np.float16}[dtype]
    meta = {
        "fingerprint": f"synthetic-{n}-{n_layers}-{hidden}-{seed}-{dtype}-{correct_rate}-"
                       f"{','.join(positions)}",
        "synthetic": True,
        "model": {"id": "synthetic", "n_layers": n_layers - 1, "hidden_size": hidden},
        "dataset": {"name": "synthetic", "content_hash": f"seed-{seed}"},
        "positions": positions, "layers": layers, "sites": {"resid": layers},
        "hidden_size": hidden, "dtype": dtype, "seed": seed,
        "layer_meaning": "resid k: synthetic stand-in for the output of decoder layer k-1",
    }
    writer = RunWriter(out, meta, overwrite=overwrite)
    for start in range(0, n, shard_size):
        rows = range(start, min(n, start + shard_size))
        records, mask = [], np.ones((len(rows), len(positions)), dtype=bool)
        for j, i in enumerate(rows):
            records.append(_record(i, bool(correct[i]), positions))
            if i % 7 == 3:  # a few answers without an exact-answer span, as in real runs
                for p, name in enumerate(positions):
                    if name.startswith("exact_answer"):
                        mask[j, p] = False
                        records[-1]["missing"][name] = "no exact answer found"
                        records[-1]["positions"].pop(name)
        tensors = {}
        sign = np.where(correct[list(rows)], -1.0, 1.0)
        for layer in layers:
            noise = rng.standard_normal((len(rows), len(positions), hidden))
            strength = np.array([signal_strength(layer, n_layers, p) for p in positions])
            x = noise + sign[:, None, None] * strength[None, :, None] * direction
            tensors[tensor_name("resid", layer)] = (x * mask[:, :, None]).astype(np_dtype)
        writer.add_shard(records, tensors, mask)
    return writer.finalize({"finished": True})


def _record(i: int, correct: bool, positions: list[str]) -> dict:
    answer = f"The answer is Place {i}." if correct else f"The answer is Place {i + 1}."
    return {
        "index": i, "id": f"synthetic/{i:04d}", "question": f"Which place is number {i}?",
        "answers": [f"Place {i}"], "prompt": f"Which place is number {i}?", "answer": answer,
        "correct": correct, "grader": "synthetic", "matched_alias": f"Place {i}" if correct else None,
        "exact_answer": f"Place {i if correct else i + 1}", "exact_answer_source": "synthetic",
        "exact_span": [3, 4], "prompt_len": 10, "gen_len": 7, "stop_reason": "eos",
        "positions": {p: k for k, p in enumerate(positions)}, "missing": {}, "synthetic": True,
    }
