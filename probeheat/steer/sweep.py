"""The whole sweep: run + grid -> steer bundle.

1. Before any model loads: the grid must come from this run (its ``run`` id and content
   hash), the cell must have been fitted, the questions are chosen (the grid's first test
   split, or all), and the cell's probe is refitted and checked against the grid.
2. The run's model loads (its revision must match) and the hook is tried at the layer.
3. The unsteered answers (alpha = 0) are generated first and must equal the run's token for
   token, grade for grade, and their captured states at the layer must match the run's
   stored activations; otherwise the sweep stops before spending the rest.
4. Every other (alpha, direction, question) row is answered in shared batches, graded, and
   read by the probe; then the KL side effect on the neutral texts; then the bundle.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..bundle import open_grid, open_run
from ..bundle.base import check_destination, check_not_inside
from ..errors import UserError
from ..progress import Progress
from .directions import (
    CellProbe,
    cell_activations,
    projected_sigma,
    random_directions,
    refit_cell,
)
from .settings import SteerSettings


@dataclass
class Plan:
    """What a sweep works on, settled before the model loads."""

    run: object
    grid: object
    settings: SteerSettings
    layer: int
    position: str
    rows: np.ndarray  # run rows of the questions, in order
    records: list[dict]
    probe: CellProbe | None = None
    stored: np.ndarray | None = None  # the run's activations at the cell, rows x d
    stored_present: np.ndarray | None = None
    all_present: np.ndarray | None = None  # every run example's activation at the cell
    timing: dict = field(default_factory=dict)  # seconds spent answering and on the KL


@dataclass
class Results:
    """Per (alpha, direction, question): [A, D, Q] arrays and the answers themselves."""

    correct: np.ndarray
    changed: np.ndarray
    scores: np.ndarray
    answers: list = field(default_factory=list)  # [A][D][Q] dicts


def plan(run_path: Path, grid_path: Path, settings: SteerSettings) -> Plan:
    """Open and check the bundles, choose the cell and the questions, refit the probe."""
    run, grid = open_run(run_path), open_grid(grid_path)
    check_same_run(run, grid)
    layer, position = choose_cell(grid, settings.cell)
    rows = question_rows(run, grid, settings)
    records = [run.records()[int(r)] for r in rows]
    for record in records:
        if not all(k in record for k in ("prompt", "generated_ids", "prompt_len", "answers")):
            raise UserError(str(run.path), f"record {record['index']} lacks its prompt or "
                            "generated token ids", "steer a run written by probeheat run 1.2+")
    out = Plan(run, grid, settings, layer, position, rows, records)
    X, present = cell_activations(run, grid, layer, position)
    out.probe = refit_cell(run, grid, layer, position, (X, present))
    out.stored, out.stored_present = X[rows], present[rows]
    out.all_present = X[present]
    return out


def check_same_run(run, grid) -> None:
    """The grid's probes must have been fitted on this run's examples."""
    ref = grid.run_ref
    if "train_run" in grid.meta:
        raise UserError(str(grid.path), "is a transfer grid (probes trained on another run)",
                        "steer with a grid made by `probeheat probe RUN`")
    if ref.get("id") != run.id or ref.get("content_hash", run.content_hash) != run.content_hash:
        raise UserError(str(grid.path), f"was made from run {ref.get('id')!r}, not from "
                        f"{run.path} ({run.id})", "pass the run the grid was probed on")
    target = grid.meta.get("target") or (grid.meta.get("probe") or {}).get("target") or "correct"
    if target != "correct" or grid.meta.get("label", "incorrect") != "incorrect":
        raise UserError(str(grid.path), f"its probes predict {target!r}, not an incorrect "
                        "answer", "steer a grid probed with the default target")
    family = (grid.meta.get("probe") or {}).get("family", "logistic")
    if family != "logistic":
        raise UserError(str(grid.path), f"its probes are of the {family} family; steer refits "
                        "the cell's logistic probe", "steer a grid probed with --probe logistic")
    site = (grid.meta.get("probe") or {}).get("site", "resid")
    if site != "resid":
        raise UserError(str(grid.path), f"probes the {site} site; steering adds to the "
                        "residual stream", "steer a grid of the resid site")


def choose_cell(grid, cell: tuple[int, str] | None) -> tuple[int, str]:
    """The requested cell, or the grid's best; refused when it was not fitted."""
    if cell is None:
        best = grid.best_cell()
        if best is None:
            raise UserError(str(grid.path), "has no fitted cell", "probe more questions")
        return best[0], best[1]
    layer, position = cell
    if layer not in grid.layers:
        raise UserError("--cell", f"the grid has no layer {layer}",
                        f"layers here: {grid.layers[0]}..{grid.layers[-1]}")
    if position not in grid.positions:
        raise UserError("--cell", f"the grid has no position {position!r}",
                        f"positions here: {', '.join(grid.positions)}")
    auc = grid.metric("auc")[grid.layers.index(layer), grid.positions.index(position)]
    if not np.isfinite(auc):
        reason = grid.reasons().get((layer, position), "no probe was fitted")
        raise UserError("--cell", f"{layer}:{position} was not fitted ({reason})",
                        "choose a fitted cell, e.g. the grid's best (leave --cell out)")
    return layer, position


def question_rows(run, grid, settings: SteerSettings) -> np.ndarray:
    """The run rows to answer again: the grid's first test split, or every question."""
    if settings.questions == "all":
        rows = np.arange(run.n_examples, dtype=np.int64)
    else:
        rows = np.sort(grid.tensor("test_rows")[0])
        rows = rows[rows >= 0].astype(np.int64)
    if rows.size and rows.max() >= run.n_examples:
        raise UserError(str(grid.path), "its test rows point past the run's examples",
                        "pass the run the grid was probed on")
    return rows[: settings.limit] if settings.limit else rows


def steer(run_path, grid_path, out, settings: SteerSettings, *,
          overwrite: bool = False) -> Path:
    """Carry out a sweep and write the steer bundle; returns its path."""
    out = Path(out)
    check_not_inside(out, [Path(run_path), Path(grid_path)])
    check_destination(out, overwrite)
    job = plan(Path(run_path), Path(grid_path), settings)
    machine = load_machine(job)
    vectors = steering_vectors(job, machine.engine.hidden_size)
    with Progress("steer", len(job.rows) * (1 + (len(settings.alphas) - 1) * len(vectors.names)),
                  unit="answers", mode=settings.progress, show_accuracy=True) as bar:
        machine.bar = bar
        started = time.perf_counter()
        results, check = answer_sweep(job, machine, vectors.deltas)
        bar.checkpoint("answers done; KL on the neutral texts")
        middle = time.perf_counter()
        kl = neutral_kl(job, machine, vectors.deltas)
        job.timing = {"answers_s": round(middle - started, 2),
                      "kl_s": round(time.perf_counter() - middle, 2)}
    from .write import write_bundle

    return write_bundle(out, job, (results, check, kl, vectors), overwrite)


@dataclass
class Machine:
    """The loaded model and everything that runs it."""

    engine: object
    grader: object
    prompts: list[list[int]]
    batch_size: int
    bar: object = None


def load_machine(job: Plan) -> Machine:
    """Load the run's model, check it is the same model, try the hook, encode the prompts."""
    from ..models import load_model
    from ..models.prompts import encode_prompt
    from ..run.capture import CaptureEngine
    from ..run.positions import prompt_lookback
    from .answers import RunGrader
    from .engine import SteerEngine

    meta, where = job.run.meta, str(job.run.path)
    model = meta.get("model") or {}
    if not job.settings.progress == "quiet":
        print(f"loading {model.get('model_id')} ...", file=sys.stderr)
    _quiet_transformers()
    if job.settings.threads:  # on a shared CPU, torch's default oversubscribes badly
        torch.set_num_threads(job.settings.threads)
    loaded = load_model(str(model.get("model_id")), device=job.settings.device,
                        dtype=str(meta.get("compute_dtype") or "float32"))
    if model.get("revision") and loaded.info.get("revision") != model.get("revision"):
        raise UserError(where, f"its model {model.get('model_id')!r} has changed since the run "
                        "(other weights)", "steer with the weights the run was made with")
    if int(loaded.info["n_layers"]) != len(job.run.layers) - 1:
        raise UserError(where, f"the model has {loaded.info['n_layers']} decoder layers, the "
                        f"run {len(job.run.layers) - 1}", "steer with the run's model")
    gen = meta.get("generation") or {}
    base = CaptureEngine(loaded, sites=("resid",), mode="generate",
                         max_new_tokens=int(gen.get("max_new_tokens", 64)),
                         stop_on_newline=bool((meta.get("prompt") or {}).get("stop_on_newline")),
                         lookback=1)
    engine = SteerEngine(base, job.layer, job.settings.at, prompt_lookback([job.position]))
    prompts = [encode_prompt(loaded.tokenizer, r["prompt"]) for r in job.records]
    for record, ids in zip(job.records, prompts, strict=True):
        if len(ids) != int(record["prompt_len"]):
            raise UserError(where, f"question {record['id']!r}: its prompt encodes to "
                            f"{len(ids)} tokens, the run's to {record['prompt_len']}",
                            "steer with the tokenizer the run was made with")
    batch = job.settings.batch_size or int(gen.get("batch_size", 16))
    return Machine(engine, RunGrader(job.run, base, job.position), prompts, batch)


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


@dataclass
class Vectors:
    """The sweep's steering vectors: deltas [A, D, d] = alpha * sigma_probe * units[d]."""

    deltas: torch.Tensor
    units: np.ndarray  # [D, d] unit directions, the probe's first
    names: list[str]
    sigmas: list[float]  # each direction's own sigma (the probe's sets the norm)


def steering_vectors(job: Plan, d: int) -> Vectors:
    """The probe's direction and the seeded random ones, scaled by every alpha."""
    probe, settings = job.probe, job.settings
    randoms = random_directions(settings.n_random, d, settings.seed)
    units = np.vstack([probe.direction[None, :], randoms])
    sigmas = [probe.sigma] + [projected_sigma(job.all_present, u) for u in randoms]
    alphas = np.asarray(settings.alphas, dtype=np.float64)
    deltas = alphas[:, None, None] * probe.sigma * units[None, :, :]
    names = ["probe"] + [f"random-{k + 1}" for k in range(settings.n_random)]
    return Vectors(torch.as_tensor(deltas, dtype=torch.float32), units, names, sigmas)


def answer_sweep(job: Plan, machine: Machine, deltas: torch.Tensor):
    """Every (alpha, direction, question) answered: the unsteered rows first (checked
    against the run), then the rest in shared batches."""
    from .check import check_unsteered

    A, D, _ = deltas.shape
    Q, zero = len(job.rows), job.settings.alphas.index(0.0)
    zero_jobs = [(zero, 0, q) for q in range(Q)]
    unsteered = answer_jobs(job, machine, deltas, zero_jobs)
    check = check_unsteered(job, unsteered)
    base_ids = [unsteered[(zero, 0, q)]["generated_ids"] for q in range(Q)]
    jobs = [(a, d, q) for a in range(A) if a != zero for d in range(D) for q in range(Q)]
    done = {**unsteered, **answer_jobs(job, machine, deltas, jobs)}
    res = Results(np.zeros((A, D, Q), np.int8), np.zeros((A, D, Q), np.int8),
                  np.full((A, D, Q), np.nan, np.float32))
    for a in range(A):
        res.answers.append([])
        for d in range(D):
            res.answers[a].append([])
            for q in range(Q):
                item = dict(done[(zero if a == zero else a, 0 if a == zero else d, q)])
                item["changed"] = item["generated_ids"] != base_ids[q]
                res.correct[a, d, q], res.changed[a, d, q] = item["correct"], item["changed"]
                if item["probe_score"] is not None:
                    res.scores[a, d, q] = item["probe_score"]
                res.answers[a][d].append(item)
    return res, check


def answer_jobs(job: Plan, machine: Machine, deltas: torch.Tensor, jobs: list) -> dict:
    """{(a, d, q): answer dict} for each job, answered in batches of similar prompt length."""
    from ..run.capture import length_batches

    out = {}
    lengths = [len(machine.prompts[q]) for _, _, q in jobs]
    for batch in length_batches(lengths, machine.batch_size):
        chosen = [jobs[i] for i in batch]
        vectors = torch.stack([deltas[a, d] for a, d, _ in chosen])
        steered = machine.engine.generate([machine.prompts[q] for _, _, q in chosen], vectors)
        records = [job.records[q] for _, _, q in chosen]
        graded = machine.grader.grade(records, steered.generated_ids)
        X, present = steered.states([g.index for g in graded])
        scores = job.probe.score(X)
        for k, (key, g) in enumerate(zip(chosen, graded, strict=True)):
            out[key] = {"alpha": float(job.settings.alphas[key[0]]), "row": int(job.rows[key[2]]),
                        "id": str(job.records[key[2]]["id"]), "answer": g.answer,
                        "generated_ids": [int(t) for t in steered.generated_ids[k]],
                        "correct": g.correct, "exact_answer": g.exact_answer,
                        "exact_span": g.exact_span, "position_index": g.index,
                        "probe_score": float(scores[k]) if present[k] else None,
                        "_state": X[k] if present[k] else None}
        machine.bar.advance(len(chosen), correct=sum(g.correct for g in graded),
                            tokens=sum(len(g) for g in steered.generated_ids))
    return out


def neutral_kl(job: Plan, machine: Machine, deltas: torch.Tensor) -> np.ndarray:
    """[A, D, S] KL on the neutral texts (0 at alpha 0, where nothing is added)."""
    from .kl import NeutralKL

    A, D, d = deltas.shape
    zero = job.settings.alphas.index(0.0)
    kl = NeutralKL(machine.engine, batch_size=machine.batch_size)
    steered = [(a, k) for a in range(A) if a != zero for k in range(D)]
    values = kl.kl(torch.stack([deltas[a, k] for a, k in steered])) if steered else None
    out = np.zeros((A, D, len(kl.ids)))
    for i, (a, k) in enumerate(steered):
        out[a, k] = values[i]
    return out


def versions() -> dict:
    import transformers

    return {"probeheat": __version__, "torch": torch.__version__,
            "transformers": transformers.__version__, "numpy": np.__version__}
