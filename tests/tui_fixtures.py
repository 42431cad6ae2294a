"""Small, deterministic bundles for the viewer's tests and benchmark.

Values follow the study's shape (exact-answer columns peak in the middle layers, the end
of the question and the last tokens lower, early layers near chance) so that screens and
snapshots look like a real grid. Dates are pinned so snapshots do not change day to day.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from pathlib import Path
from unittest import mock

import numpy as np

from probeheat.bundle import RunWriter, open_run, write_grid

POSITIONS = ["last_q", "first_answer", "second_answer", "exact_answer_before_first",
             "exact_answer_first", "exact_answer_last", "exact_answer_after_last",
             "-8", "-7", "-6", "-5", "-4", "-3", "-2", "-1"]
PEAKS = {"last_q": 0.76, "first_answer": 0.74, "second_answer": 0.75,
         "exact_answer_before_first": 0.78, "exact_answer_first": 0.82,
         "exact_answer_last": 0.85, "exact_answer_after_last": 0.86, "-2": 0.73, "-1": 0.71}
CREATED = "2025-01-15T12:00:00+00:00"
CATEGORIES = ("science", "literature", "geography", "history", "science", "art")  # by question
NO_SPAN = "no exact answer: no short answer in the first sentence (heuristic, 9 words)"
QUESTIONS = ["Which planet is known as the Red Planet?", "Who wrote the novel Middlemarch?",
             "What is the capital of Australia?", "In which year did the Berlin Wall fall?",
             "Which element has the chemical symbol Fe?", "Who painted The Night Watch?"]


@contextlib.contextmanager
def pinned_dates():
    """Bundles written inside get a fixed creation date."""
    with mock.patch("probeheat.bundle.base.now_iso", return_value=CREATED):
        yield


def make_run(out: Path, *, n: int = 60, layers: int = 32, positions=POSITIONS) -> Path:
    """A run bundle with n graded answers and tiny (d=4) hidden states."""
    rng = np.random.default_rng(7)
    meta = {"fingerprint": "tui-test", "positions": list(positions),
            "layers": list(range(layers)), "sites": {"resid": list(range(layers))},
            "hidden_size": 4, "dtype": "float32",
            "model": {"name": "tiny-llama"}, "dataset": {"name": "triviaqa"}}
    records = [make_record(i, positions) for i in range(n)]
    tensors = {f"resid.{k}": rng.standard_normal((n, len(positions), 4)).astype(np.float32)
               for k in range(layers)}
    mask = np.array([[p in r["positions"] for p in positions] for r in records], dtype=bool)
    with pinned_dates():
        writer = RunWriter(out, meta)
        writer.add_shard(records, tensors, mask)
        return writer.finalize()


def make_record(i: int, positions=POSITIONS) -> dict:
    """Example i: every third answer is wrong, every fourth wrong one has no exact answer
    (its exact-answer positions missing); the category is its question's (CATEGORIES)."""
    correct = bool(i % 3)
    q = QUESTIONS[i % len(QUESTIONS)]
    span = correct or i % 4 != 0
    missing = {} if span else {p: NO_SPAN for p in positions if p.startswith("exact_answer")}
    answer = "gold" if correct else f"wrong answer {i}"
    return {"index": i, "id": f"q{i:03d}", "question": f"{q} (#{i})", "answers": ["gold"],
            "answer": answer, "correct": correct, "category": CATEGORIES[i % len(CATEGORIES)],
            "matched_alias": "gold" if correct else None,
            "exact_answer": (answer if correct else f"answer {i}") if span else None,
            "exact_span": [0, 0] if span else None,
            "positions": {p: 5 for p in positions if p not in missing}, "missing": missing}


def grid_values(layers: int, positions, seed: int = 0) -> np.ndarray:
    """AUCs shaped like the study's: a ridge in the middle layers, noise on top."""
    rng = np.random.default_rng(seed)
    depth = np.arange(layers)[:, None] / max(1, layers - 1)
    ridge = np.exp(-((depth - 0.4) ** 2) / 0.05)
    peaks = np.array([PEAKS.get(p, 0.66) for p in positions])[None, :]
    auc = 0.55 + (peaks - 0.55) * (0.35 + 0.65 * ridge)
    return np.clip(auc + rng.normal(0, 0.012, auc.shape), 0.0, 1.0)


def make_grid(out: Path, *, run: Path | None = None, layers: int = 32, positions=POSITIONS,
              seed: int = 0, nan_cells=((0, "exact_answer_before_first"), (1, "-8")),
              n_records: int = 60, title: str | None = None) -> Path:
    """A grid bundle; cells listed in nan_cells have no probe (with a reason)."""
    positions = list(positions)
    auc = grid_values(layers, positions, seed)
    reasons = []
    for layer, pos in nan_cells:
        if layer < layers and pos in positions:
            auc[layer, positions.index(pos)] = np.nan
            reasons.append({"layer": layer, "position": pos,
                            "reason": "only one class among the test examples"})
    shape = auc.shape
    rng = np.random.default_rng(seed + 1)
    k = n_records // 3
    test_rows = np.arange(n_records - k, n_records, dtype=np.int64)[None, :]
    labels = np.array([0 if i % 3 else 1 for i in range(n_records)], dtype=np.int8)
    scores = rng.random((1, *shape, k)).astype(np.float32)
    scores[0, np.isnan(auc)] = np.nan
    tensors = {
        "auc": auc, "auc_lo": auc - 0.03, "auc_hi": np.minimum(1.0, auc + 0.03),
        "accuracy": np.clip(auc - 0.1, 0, 1),
        "n_train": np.full(shape, n_records - k, np.int64), "n_test": np.full(shape, k, np.int64),
        "n_test_pos": np.full(shape, int(labels[-k:].sum()), np.int64),
        "scores": scores, "test_rows": test_rows,
        "train_rows": np.arange(n_records - k, dtype=np.int64)[None, :], "labels": labels,
    }
    meta = {"layers": list(range(layers)), "positions": positions,
            "metrics": ["auc", "accuracy"], "nan_reasons": reasons,
            "model": {"name": "tiny-llama"}, "dataset": {"name": "triviaqa"}}
    if title:
        meta["title"] = title
    if run is not None:
        bundle = open_run(run)
        meta["run"] = {"id": bundle.id, "content_hash": bundle.content_hash, "path": str(run)}
    with pinned_dates():
        return write_grid(out, meta, tensors)


def make_artifacts(root: Path) -> dict[str, Path]:
    """A folder like artifacts/: a run, its grid, a second grid, and a run without a grid."""
    run = make_run(root / "runs" / "tiny-trivia")
    paths = {
        "run": run,
        "grid": make_grid(root / "grids" / "tiny-trivia", run=run),
        "grid_b": make_grid(root / "grids" / "tiny-trivia-seed1", run=run, seed=1),
        "run_only": make_run(root / "runs" / "tiny-nogrid", n=12, layers=4),
    }
    return paths


# -- Pilot helpers ---------------------------------------------------------------------------

SIZE = (100, 30)  # small enough that 32 layers scroll


def pilot_test(test):
    """Run an async Pilot test with asyncio (no pytest async plugin needed)."""

    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))

    return run


def screen_text(app) -> str:
    return "\n".join(strip.text for strip in app.screen._compositor.render_strips())


async def answer_prompt(pilot, key: str, text: str) -> None:
    """Open a prompt with key, fill it in and submit (typing each key is slow under Pilot)."""
    await pilot.press(key)
    pilot.app.screen.query_one("Input").value = text
    await pilot.press("enter")


def status(app) -> str:
    return str(app.screen.query_one("#status").render())
