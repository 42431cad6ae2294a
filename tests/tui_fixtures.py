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

from probeheat.bundle import RunWriter, open_bundle, open_run, write_grid

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


# -- runs with sampled answers, and what is made from them -----------------------------------

def make_sampled_artifacts(root: Path) -> dict[str, Path]:
    """A folder like artifacts/ for a run with 8 sampled answers per question (synthetic,
    planted error types): its grid, its error-type grids (``probe --target error-type``),
    a selection (``probeheat select``) and a steer bundle at the selection's cell."""
    from probeheat.probe.grid import make_grid as probe_grid
    from probeheat.probe.grid import make_type_grids
    from probeheat.probe.select import make_selection
    from probeheat.probe.settings import probe_settings
    from probeheat.synthetic import write_synthetic_run

    with pinned_dates():
        run = write_synthetic_run(root / "runs" / "sampled", n=120, n_layers=4, hidden=8,
                                  samples=8)
        grid = probe_grid(run, root / "grids" / "sampled", progress=False)
        types, _ = make_type_grids(run, root / "grids" / "sampled-types", progress=False,
                                   settings=probe_settings(target="error-type"))
        selection = make_selection(run, grid, root / "selections" / "sampled")
        cell = open_bundle(selection).meta["cell"]
        steer = make_steer(root / "steer" / "sampled", run, grid, cell["layer"],
                           cell["position"])
    return {"run": run, "grid": grid, "types": root / "grids" / "sampled-types",
            "type_grids": types, "selection": selection, "steer": steer}


def make_steer(out: Path, run: Path, grid: Path, layer: int, position: str,
               alphas=(-4.0, 0.0, 4.0), n_random: int = 2) -> Path:
    """A small valid steer bundle of a grid at a cell, written with write_steer: made-up
    answers (the probe's direction helps at +alpha, random ones do nothing), the table and
    verdict computed as `probeheat steer` computes them (probeheat.steer.metrics)."""
    from probeheat.bundle import open_grid, write_steer
    from probeheat.probe.grid import run_ref
    from probeheat.steer.metrics import sweep_table, verdict

    g = open_grid(grid)
    rows = g.tensor("test_rows")[0]
    rows = rows[rows >= 0].astype(np.int64)
    names = ["probe"] + [f"random-{k + 1}" for k in range(n_random)]
    A, D, Q = len(alphas), len(names), len(rows)
    rng = np.random.default_rng(3)
    base = rng.random(Q) < 0.4
    correct = np.broadcast_to(base, (A, D, Q)).copy()
    for a, alpha in enumerate(alphas):
        if alpha > 0:  # the probe's direction fixes a third of the wrong answers
            correct[a, 0] |= rng.random(Q) < 0.33
    changed = correct != base[None, None, :]
    scores = rng.normal(0.0, 1.0, (A, D, Q)).astype(np.float32)
    kl_by_text = np.abs(np.asarray(alphas))[:, None, None] * np.full((A, D, 3), 0.01)
    table = sweep_table(list(alphas), names, correct, changed, scores, kl_by_text.mean(-1))
    meta = {"run": run_ref(open_bundle(run), out), "grid": run_ref(g, out),
            "cell": {"layer": layer, "position": position, "site": "resid"},
            "alphas": list(alphas), "at": "generated",
            "directions": [{"name": n, "kind": "probe" if k == 0 else "random",
                            "seed": None if k == 0 else 0} for k, n in enumerate(names)],
            "questions": {"set": "test", "n": Q, "split_seed": 0},
            "kl": {"texts": 3}, "verdict": verdict(table, layer, position),
            "model": {"model_id": "synthetic", "hidden_size": 8}}
    tensors = {**table.as_tensors(), "kl_by_text": kl_by_text,
               "correct": correct.astype(np.int8), "answer_changed": changed.astype(np.int8),
               "probe_scores": scores, "rows": rows, "sigma": np.ones(D),
               "directions": np.eye(D, 8, dtype=np.float32), "probe_weight": np.ones(8)}
    answers = [{"answer": f"answer {a}-{d}-{q}", "correct": bool(correct[a, d, q]),
                "direction": names[d]} for a in range(A) for d in range(D) for q in range(Q)]
    return write_steer(out, meta, tensors, answers)


# -- head grids -------------------------------------------------------------------------------

HEAD_POSITIONS = "exact_answer_last,-1"


def make_head_artifacts(root: Path) -> dict[str, Path]:
    """A synthetic run with site "head" (4 heads of 4 dims at layers 1-4; head 1 carries
    the planted signal, head 3 none) and its head grid over two positions, made by the
    real probe code (``probe --site head``) with its calibration metrics."""
    from probeheat.probe.grid import make_grid as probe_grid
    from probeheat.synthetic import write_synthetic_run

    with pinned_dates():
        run = write_synthetic_run(root / "runs" / "heads", n=160, n_layers=4, hidden=8,
                                  heads=(4, 4))
        grid = probe_grid(run, root / "grids" / "heads", site="head",
                          positions=HEAD_POSITIONS, progress=False)
    return {"run": run, "grid": grid}


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
