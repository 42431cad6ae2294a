"""`probeheat select`: among a question's sampled answers, take the one the probe trusts most.

The study's answer selection (its probe_choose_answer step), written again:

* the probe is the grid's probe at one cell (default: the grid's best cell among those the
  samples were captured at), refitted on the grid's first split's TRAINING questions with
  the grid's settings, on their greedy answers; the refit must reproduce the grid's stored
  test scores (else the command refuses);
* only the first split's TEST questions are scored, so no sample of a scored question was
  seen in training;
* each sample is scored at that cell on its own hidden state; a sample lacking the position
  (no exact answer) cannot be scored. The probe takes the sample with the lowest log-odds of
  an error (ties: the lowest sample index). Candidates are the scorable samples, or every
  sample when none is scorable (then the probe takes sample 0, as the study's code does);
* baselines: greedy (the greedy answer's grade), random (a seeded uniform choice among the
  same candidates) and majority (correct when the correct samples outnumber the largest
  cluster of wrong ones, C > W, the study's rule);
* each accuracy has a 95% percentile bootstrap interval over questions (2,000 resamples,
  seeded) and an exact two-sided McNemar test against greedy on the same questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..bundle import open_grid, open_run
from ..bundle.base import check_destination, check_not_inside
from ..bundle.selection import METHODS, write_selection
from ..errors import UserError
from .grid import run_ref
from .settings import ProbeSettings

N_BOOT = 2000
MAX_REFIT_DIFF = 1e-3  # the refit's test scores against the grid's (float32 stored)


@dataclass
class Selection:
    rows: np.ndarray  # test questions (rows of the run)
    correct: dict[str, np.ndarray]  # method -> [Q] 0/1
    choice: np.ndarray  # the probe's sample per question
    scores: np.ndarray  # [Q, K] log-odds of an error; NaN where not scorable
    no_scorable: int


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> tuple[float, int, int]:
    """Exact two-sided McNemar p of paired 0/1 outcomes; (p, a right & b wrong, the reverse)."""
    better = int(np.sum((a == 1) & (b == 0)))
    worse = int(np.sum((a == 0) & (b == 1)))
    n = better + worse
    if n == 0:
        return 1.0, better, worse
    k = min(better, worse)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0 ** n
    return min(1.0, 2.0 * tail), better, worse


def bootstrap_interval(values: np.ndarray, seed: int, level: float = 0.95) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, (N_BOOT, values.size))].mean(1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def choose(scores: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
    """(probe's choice, random choice, questions without a scorable sample) per question."""
    Q, K = scores.shape
    probe, rand = np.zeros(Q, np.int64), np.zeros(Q, np.int64)
    none = 0
    for q in range(Q):
        ok = np.flatnonzero(~np.isnan(scores[q]))
        if ok.size == 0:
            none += 1
            ok = np.arange(K)
            probe[q] = 0
        else:
            probe[q] = ok[np.argmin(scores[q, ok])]  # argmin: first of equal lows
        rand[q] = ok[rng.integers(0, ok.size)]
    return probe, rand, none


def refit_probe(run, grid, layer: int, position: str):
    """The grid's probe at a cell, refitted on its first split's training rows, and the
    largest difference of its test scores from the grid's."""
    from .cells import fit_cell_model

    settings = grid_settings(grid)
    X, mask = run.read_layer(layer, settings.site)
    col = run.positions.index(position)
    X, mask = X[:, col], mask[:, col]
    if (grid.meta.get("probe") or {}).get("exclude_clamped"):
        from .grid import clamped_mask

        mask = mask & ~clamped_mask(run, [position])[:, 0]
    y = grid.tensor("labels").astype(np.int64)
    train = grid.tensor("train_rows")[0]
    train = train[train >= 0]
    train = train[mask[train]]
    rows, stored, _ = grid.scores(layer, position, 0)
    model = fit_cell_model(X[train], y[train], settings)
    again = model.decision_function(X[rows]).astype(np.float32).astype(np.float64)
    return model, float(np.max(np.abs(again - stored))) if rows.size else 0.0


def grid_settings(grid) -> ProbeSettings:
    probe = grid.meta.get("probe") or {}
    return ProbeSettings(C=float(probe.get("C", 1.0)), standardize=bool(probe.get(
        "standardize", True)), site=str(probe.get("site", "resid")),
        tol=float(probe.get("tol", 1e-8)), max_iter=int(probe.get("max_iter", 100)))


def pick_cell(grid, run, cell: str | None) -> tuple[int, str, str]:
    """(layer, position, how it was chosen); the cell must be in the grid and the samples."""
    spec = run.samples
    layers, positions = spec["layers"], spec["positions"]
    values = grid.grid_values.values["auc"]
    if cell is not None:
        layer, position = parse_cell(cell)
        if layer not in grid.layers or position not in grid.positions:
            raise UserError("--cell", f"{cell} is not a cell of {grid.path}",
                            f"layers {grid.layers[0]}..{grid.layers[-1]}, positions "
                            f"{', '.join(grid.positions)}")
        if np.isnan(values[grid.layers.index(layer), grid.positions.index(position)]):
            raise UserError("--cell", f"{cell} was not fitted in {grid.path}", "pick another")
        chosen = "--cell"
    else:
        masked = np.full_like(values, np.nan)
        for i, lay in enumerate(grid.layers):
            for j, pos in enumerate(grid.positions):
                if lay in layers and pos in positions:
                    masked[i, j] = values[i, j]
        if np.isnan(masked).all():
            raise UserError(str(grid.path), "no fitted cell is at a layer and position the "
                            f"samples were captured at ({', '.join(positions)})",
                            "run with --sample-positions naming a probed position")
        i, j = np.unravel_index(np.nanargmax(masked), masked.shape)
        layer, position = grid.layers[i], grid.positions[j]
        best = grid.best_cell()
        chosen = "the grid's best cell" if best[:2] == (layer, position) else (
            f"the best cell the samples have (the grid's best, L{best[0]} {best[1]}, is not "
            "among them)")
    if layer not in layers or position not in positions:
        raise UserError("--cell", f"samples were not captured at layer {layer} {position}",
                        f"sample layers {layers[0]}..{layers[-1]}, positions "
                        f"{', '.join(positions)}")
    return layer, position, chosen


def parse_cell(text: str) -> tuple[int, str]:
    layer, sep, position = str(text).partition(":")
    try:
        return int(layer), position.strip() if sep and position.strip() else _no_cell(text)
    except ValueError:
        _no_cell(text)


def _no_cell(text: str):
    raise UserError("--cell", f"cannot read {text!r}", "pass LAYER:POSITION, e.g. 12:exact_answer_last")


def check_inputs(run, grid) -> None:
    """A grid of this run, predicting correctness, and a run with samples."""
    if grid.run_ref.get("id") != run.id:
        raise UserError(str(grid.path), f"was made from run {grid.run_ref.get('id')}, not from "
                        f"{run.path} ({run.id})", "pass the run the grid was made from")
    if grid.meta.get("target", "correct") != "correct":
        raise UserError(str(grid.path), f"predicts {grid.meta.get('label')}, not errors",
                        "pass a grid made with --target correct (the default)")
    if run.samples is None:
        raise UserError(str(run.path), "has no sampled answers to choose from",
                        "make the run with probeheat run --samples K")


def select_answers(run, grid, cell: str | None = None, seed: int = 0):
    """(Selection, cell facts) of the grid's first split's test questions (module doc)."""
    check_inputs(run, grid)
    layer, position, chosen = pick_cell(grid, run, cell)
    model, diff = refit_probe(run, grid, layer, position)
    if diff > MAX_REFIT_DIFF:
        raise UserError(str(grid.path), f"refitting the probe at L{layer} {position} gives "
                        f"test scores {diff:.2g} away from the grid's", "probe the run again "
                        "with this probeheat, then select")
    rows = grid.tensor("test_rows")[0]
    rows = rows[rows >= 0].astype(np.int64)
    X, mask = run.read_samples(layer)
    col = run.samples["positions"].index(position)
    Xq, mq = X[rows, :, col], mask[rows, :, col]
    Q, K, d = Xq.shape
    scores = model.decision_function(Xq.reshape(Q * K, d)).reshape(Q, K)
    scores = np.where(mq, scores, np.nan)
    probe, rand, none = choose(scores, np.random.default_rng(seed))
    records = run.records()
    correct = {
        "greedy": np.array([records[r]["correct"] for r in rows], dtype=np.int8),
        "random": _picked(records, rows, rand), "probe": _picked(records, rows, probe),
        "majority": np.array([records[r]["error_type"]["correct"]
                              > records[r]["error_type"]["largest_wrong"] for r in rows],
                             dtype=np.int8)}
    facts = {"layer": layer, "position": position, "chosen": chosen,
             "refit_max_abs_diff": diff,
             "test_auc": _cell_auc(grid, layer, position)}
    return Selection(rows, correct, probe, scores.astype(np.float32), none), facts


def _picked(records, rows, choice) -> np.ndarray:
    return np.array([records[r]["samples"][int(c)]["correct"] for r, c in zip(rows, choice,
                                                                             strict=True)],
                    dtype=np.int8)


def _cell_auc(grid, layer, position) -> float | None:
    value = grid.grid_values.values["auc"][grid.layers.index(layer),
                                           grid.positions.index(position)]
    return None if np.isnan(value) else float(value)


WHAT = {"greedy": "the greedy answer",
        "random": "a random scorable sample (seeded)",
        "majority": "correct when correct samples outnumber the largest wrong cluster (C > W)",
        "probe": "the sample the probe scores least likely wrong"}


def accuracy_table(sel: Selection, seed: int) -> dict[str, dict]:
    table = {}
    for k, method in enumerate(METHODS):
        values = sel.correct[method].astype(np.float64)
        lo, hi = bootstrap_interval(values, seed + k)
        acc = float(values.mean())
        row = {"accuracy": acc, "lo": min(lo, acc), "hi": max(hi, acc), "n": int(values.size),
               "what": WHAT[method]}
        if method != "greedy":
            p, better, worse = mcnemar_p(sel.correct[method], sel.correct["greedy"])
            row.update({"p_vs_greedy": p, "better": better, "worse": worse})
        table[method] = row
    return table


def by_type(run, sel: Selection) -> dict:
    """Each method's accuracy within each paper error type (the study reports these)."""
    from ..data.error_types import PAPER_TYPES, has_type

    records = run.records()
    out = {}
    for name in PAPER_TYPES:
        keep = np.array([has_type(records[r]["error_type"]["types"], name) for r in sel.rows])
        if keep.any():
            out[name] = {"n": int(keep.sum()),
                         **{m: float(sel.correct[m][keep].mean()) for m in METHODS}}
    return out


def make_selection(run_path, grid_path, out_path, *, cell: str | None = None, seed: int = 0,
                   overwrite: bool = False) -> Path:
    """Choose answers by probe and write a selection bundle (module doc)."""
    out_path = Path(out_path)
    check_not_inside(out_path, [Path(run_path), Path(grid_path)])
    check_destination(out_path, overwrite)
    run, grid = open_run(run_path), open_grid(grid_path)
    sel, facts = select_answers(run, grid, cell, seed)
    spec = run.samples
    meta = {
        "run": run_ref(run, out_path), "grid": run_ref(grid, out_path), "cell": facts,
        "samples": {key: spec[key] for key in ("k", "temperature", "top_p", "top_k")
                    if key in spec},
        "questions": {"n": int(sel.rows.size), "split_seed": _split_seed(grid),
                      "no_scorable_sample": sel.no_scorable},
        "table": accuracy_table(sel, seed), "by_type": by_type(run, sel), "seed": seed,
        "interval": f"95% percentile bootstrap over questions ({N_BOOT} resamples)",
        "paired_test": "exact two-sided McNemar against greedy on the same questions",
        **{key: run.meta[key] for key in ("model", "dataset") if run.meta.get(key)},
        "versions": {"probeheat": __version__, "numpy": np.__version__},
    }
    warning = span_caution(run, facts["position"])
    if warning:
        meta["caution"] = warning
    tensors = {"rows": sel.rows, "choice": sel.choice, "scores": sel.scores,
               **{f"{m}_correct": sel.correct[m] for m in METHODS}}
    return write_selection(out_path, meta, tensors, overwrite=overwrite)


def span_caution(run, position: str) -> str | None:
    """Why a probe at this position may choose by the grade itself: under the study's
    exact-answer rule a correct sample's span is a gold alias (the grade picks the span),
    so a probe at an exact-answer position can read the span choice (README)."""
    if not position.startswith("exact_answer") or \
            run.meta.get("exact_answer_rule", "study") != "study":
        return None
    return (f"{position} under the study's exact-answer rule: a sample's span is found "
            "with its grade (a correct one's is a gold alias), so the probe can choose by "
            "the span itself; compare --cell LAYER:-1, or a run with --exact-answer "
            "symmetric")


def _split_seed(grid) -> int | None:
    splits = grid.meta.get("splits") or [{}]
    return splits[0].get("seed")


def table_lines(table: dict[str, dict]) -> list[str]:
    """The printed table: method, accuracy [interval], n, McNemar p against greedy."""
    lines = [f"{'method':<9} {'accuracy':>8}  {'95% interval':<15} {'n':>5}  vs greedy"]
    for method in METHODS:
        row = table[method]
        versus = "" if method == "greedy" else (
            f"+{row['better']} / -{row['worse']}, McNemar p={row['p_vs_greedy']:.3g}")
        lines.append(f"{method:<9} {row['accuracy']:>8.3f}  [{row['lo']:.3f}, {row['hi']:.3f}]"
                     f"  {row['n']:>5}  {versus}")
    return lines
