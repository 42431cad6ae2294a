"""`probeheat run`: dataset -> prompts -> batched greedy answers + activations -> run bundle.

The pieces: probeheat.data (datasets, grading, exact answers), probeheat.models (loading,
prompts), .capture (generation with capture at every layer), .positions (names -> indices),
.records (per-example records) and probeheat.bundle.RunWriter (shards, resume). This module
wires them and keeps the books: progress, resume, data-parallel ranks, the run's metadata.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..bundle import RunAlreadyComplete, RunWriter
from ..bundle.base import now_iso
from ..errors import UserError
from ..progress import Progress, Totals, counted
from .config import RunConfig, check_config, fingerprint, numpy_dtype, store_dtype
from .distributed import Dist
from .positions import prompt_lookback
from .records import Pending, answer_records


@dataclass
class RunContext:
    """Everything the stages of one run share, built once."""

    cfg: RunConfig
    names: list[str]
    dataset: Any
    loaded: Any
    prompts: Any
    grader: str
    meta: dict = field(default_factory=dict)
    engine: Any = None
    extractor: Any = None
    p_true: Any = None
    replay: dict | None = None  # index -> the source run's record (--answers-from)
    sampling: Any = None  # .sampling.Sampling with --samples K, else None
    sample_names: list[str] = field(default_factory=list)  # positions captured for samples
    sample_layers: list[int] = field(default_factory=list)  # resid layers captured for them
    heads: dict | None = None  # site "head": n_heads, head_dim, the module hooked


def run(cfg: RunConfig, argv: list[str] | None = None) -> Path | None:
    """Carry out a run; returns the bundle path (None on ranks other than 0)."""
    names = check_config(cfg)  # --samples and its options included
    dist = Dist.from_env()
    try:
        ctx = prepare(cfg, names, argv)
        writer = open_writer(ctx, dist)
        if writer is None:
            return Path(cfg.out) if dist.rank == 0 else None
        return answer_all(ctx, writer, dist)
    finally:
        dist.close()


def prepare(cfg: RunConfig, names: list[str], argv) -> RunContext:
    """Load the dataset, the model and the prompts; describe the run."""
    import torch

    from ..data import load_dataset
    from ..models import load_model
    from .prompts import Prompts

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dataset = load_dataset(cfg.dataset, question_column=cfg.question_column,
                           answers_column=cfg.answers_column, id_column=cfg.id_column,
                           limit=cfg.limit, seed=cfg.seed, missing_id=cfg.missing_id)
    check_before_loading(cfg, dataset)  # before minutes of loading a model, not after
    if not cfg.verbose:  # third-party bars ("Loading weights") would break our own output
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    say(cfg, f"loading {cfg.model} ...")
    loaded = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, device_map=cfg.device_map,
                        trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    template = dataset.template if cfg.template == "auto" and dataset.template else cfg.template
    prompts = Prompts(loaded.tokenizer, template, cfg.few_shot,
                      [e.question for e in dataset.examples])
    ctx = RunContext(cfg, names, dataset, loaded, prompts, cfg.grader or dataset.grader)
    if "head" in cfg.sites:  # an architecture without a known projection: refused here
        from .capture import head_info

        ctx.heads = head_info(loaded.model)
    if cfg.answers_from is not None:
        ctx.replay = source_answers(ctx)
    if cfg.samples:
        prepare_sampling(ctx)
    ctx.meta = run_metadata(ctx, argv)
    return ctx


def source_answers(ctx: RunContext) -> dict[int, dict]:
    """The records of --answers-from, refused unless they answer exactly these prompts."""
    from ..bundle import open_run

    cfg, where = ctx.cfg, "--answers-from"
    source = open_run(cfg.answers_from)
    model = source.meta.get("model") or {}
    mine = ctx.loaded.info
    if (model.get("model_id"), model.get("revision")) != (mine.get("model_id"),
                                                          mine.get("revision")):
        raise UserError(where, f"{source.path} was answered by {model.get('model_id')!r}, "
                        f"not {mine.get('model_id')!r}", "reuse answers of the same model")
    # the same questions in the same order, or the first of them (a smaller --limit)
    records = {r["index"]: r for r in source.records()}
    examples = ctx.dataset.examples  # as many as the source answered: check_before_loading
    if any(i not in records or records[i].get("prompt") != ctx.prompts.text[i]
            or records[i].get("id") != examples[i].id for i in range(len(examples))):
        raise UserError(where, f"{source.path} answered other prompts (dataset, --seed, "
                        "--template or --few-shot differ, or --limit is larger)",
                        "pass the same ones (a smaller --limit reuses the first answers)")
    records = {i: records[i] for i in range(len(examples))}
    if not all("generated_ids" in r for r in records.values()):
        raise UserError(where, f"{source.path} kept no generated token ids (written before "
                        "format 1.2)", "run it again with this probeheat")
    return records  # the copy of the dataset was checked before loading


def prepare_sampling(ctx: RunContext) -> None:
    """What --samples K samples and captures: the spec, positions and resid layers."""
    from ..selection import select_layers
    from .config import check_sampling
    from .sampling import Sampling

    cfg = ctx.cfg
    ctx.sampling = Sampling(cfg.samples, float(cfg.temperature), float(cfg.top_p),
                            int(cfg.top_k))
    ctx.sample_names = check_sampling(cfg)
    layers = list(range(int(ctx.loaded.info["n_layers"]) + 1))
    ctx.sample_layers = select_layers(cfg.sample_layers, layers, where="--sample-layers",
                                      source=f"{cfg.model}'s resid layers")


def samples_meta(ctx: RunContext) -> dict | None:
    if ctx.sampling is None:
        return None
    return {**ctx.sampling.as_meta(), "site": "resid", "layers": ctx.sample_layers,
            "positions": ctx.sample_names, "seed": ctx.cfg.seed,
            "capture": "one re-forward over prompt + sample after sampling",
            "error_types": "probeheat.data.error_types (the study's rules; README)"}


def check_before_loading(cfg: RunConfig, dataset) -> None:
    """What can be checked before minutes of loading a model: --category-column /
    --group-column name columns the dataset has, --few-shot and --template are valid,
    and --answers-from is a run of as many questions of this dataset."""
    from ..models.prompts import check_template
    from .prompts import check_few_shot

    check_few_shot(cfg.few_shot)
    check_template(cfg.template)
    if cfg.answers_from is not None:
        check_answers_from(cfg, dataset)
    for flag, column in (("--category-column", cfg.category_column),
                         ("--group-column", cfg.group_column)):
        if column is not None and column not in dataset.columns():
            there = ", ".join(map(repr, dataset.columns())) or "none besides question, answers, id"
            raise UserError(flag, f"{dataset.name} has no column {column!r} (columns: {there})",
                            f"pass {flag} with one of them")


def check_answers_from(cfg: RunConfig, dataset) -> None:
    from ..bundle import open_run

    source = open_run(cfg.answers_from)
    where = "--answers-from"
    if source.n_examples < len(dataset.examples):
        raise UserError(where, f"{source.path} answered {source.n_examples} questions, this "
                        f"run asks {len(dataset.examples)}", "pass the same dataset and "
                        "--seed, and a --limit of at most that")
    if dataset.content_hash != (source.meta.get("dataset") or {}).get("content_hash"):
        raise UserError(where, f"{source.path} used another copy of the dataset",
                        "pass the same dataset")


def open_writer(ctx: RunContext, dist: Dist) -> RunWriter | None:
    """The shard writer of this rank; None when the run is already complete."""
    cfg, writer, error = ctx.cfg, None, None
    if dist.rank == 0:
        try:
            writer = RunWriter(cfg.out, ctx.meta, resume=cfg.resume, overwrite=cfg.overwrite)
        except RunAlreadyComplete:
            error = "complete"
        except UserError as exc:
            error = exc.line()
    error = dist.broadcast_error(error)
    if error == "complete":
        say(cfg, f"{cfg.out}: run already complete; nothing to do")
        return None
    if error:
        if dist.rank == 0:
            raise UserError(None, error)
        return None
    dist.barrier()
    return writer or RunWriter(cfg.out, ctx.meta, resume=True, rank=dist.rank)


def answer_all(ctx: RunContext, writer: RunWriter, dist: Dist) -> Path | None:
    """Answer every example this rank has left, then (rank 0) finish the bundle."""
    from .capture import CaptureEngine
    from .extract import Extractor

    cfg = ctx.cfg
    done = writer.done_records()
    ctx.engine = CaptureEngine(ctx.loaded, sites=tuple(cfg.sites),
                               mode="reforward" if ctx.replay else cfg.capture,
                               max_new_tokens=cfg.max_new_tokens,
                               stop_on_newline=ctx.prompts.stop_on_newline,
                               lookback=prompt_lookback(ctx.names))
    ctx.extractor = Extractor(cfg, ctx.engine) if cfg.extractor_model else None
    if cfg.baselines:
        from .p_true import PTrueScorer

        ctx.p_true = PTrueScorer(ctx.engine, chat=ctx.prompts.kind == "chat")
    before = Totals(done_before=len(done), correct_before=sum(done.values()))
    started = time.perf_counter()
    try:
        totals = capture_all(ctx, writer, batches_to_do(ctx, dist, done), before)
    except BaseException:
        writer.close()  # the partial stays for --resume; the lock goes
        raise
    dist.barrier()
    if dist.rank != 0:
        return None
    path = writer.finalize({"finished": now_iso()})
    report(ctx, path, totals, time.perf_counter() - started)
    return path


def batches_to_do(ctx: RunContext, dist: Dist, done) -> list[tuple[list[int], list[bool]]]:
    """This rank's batches as an uninterrupted run forms them, with the rows still to do.

    Batches are always cut from the rank's whole share, never from what is left after a
    resume: a row's arithmetic (its padding, its batch neighbours) is then the same however
    often the run was interrupted, so a resumed run's activations equal an uninterrupted
    run's bit for bit. A batch interrupted half way is answered whole again; only its new
    rows are kept.
    """
    from .capture import length_batches

    mine = dist.mine(range(len(ctx.dataset.examples)))
    out = []
    for batch in length_batches([len(ctx.prompts.ids[i]) for i in mine], ctx.cfg.batch_size):
        rows = [mine[r] for r in batch]
        keep = [i not in done for i in rows]
        if any(keep):
            out.append((rows, keep))
    return out


def capture_all(ctx: RunContext, writer: RunWriter, batches, totals: Totals) -> Totals:
    """Generate, grade, locate and gather for every example to do; write shards as they fill."""
    cfg, pending = ctx.cfg, Pending()
    dtype = numpy_dtype(ctx.meta["dtype"])
    bar = Progress("run", sum(sum(keep) for _, keep in batches), mode=cfg.progress_mode,
                   interval=cfg.log_interval, totals=totals, show_accuracy=True)
    with bar:
        for rows, keep in batches:
            # rows count as they finish; else (resumed batch, replay, samples) at the end
            whole = all(keep) and ctx.replay is None and ctx.sampling is None
            prompts = [ctx.prompts.ids[i] for i in rows]
            batch = ctx.engine.replay(prompts, [ctx.replay[i] for i in rows]) if ctx.replay \
                else ctx.engine.generate(prompts, on_progress=(
                    lambda n, t: bar.advance(n, tokens=t)) if whole else None)
            records = answer_records(ctx, rows, batch)
            acts, mask = batch.gather([r["positions"] for r in records], ctx.names)
            new = np.flatnonzero(keep)
            tensors = {f"{site}.{k}": acts[site][new, j].astype(dtype)
                       for site, layers in ctx.meta["sites"].items()
                       for j, k in enumerate(layers)}
            if ctx.sampling is not None:
                tensors.update(add_samples(ctx, rows, records, new, bar))
            pending.add([records[k] for k in new], tensors, mask[new])
            bar.advance(0 if whole else len(new), tokens=0 if whole else batch.n_tokens,
                        correct=sum(records[k]["correct"] for k in new))
            while pending.n >= cfg.shard_size:
                flush(writer, pending, cfg.shard_size, bar)
        flush(writer, pending, pending.n, bar)
    return bar.totals


def add_samples(ctx: RunContext, rows: list[int], records, new, bar) -> dict[str, np.ndarray]:
    """Sample K answers for the batch's questions; put the samples and error types in their
    records and return the samples' tensors for the rows kept (``new``)."""
    from .records import sample_records
    from .sampling import chunks, generators, sample_answers

    k, names, layers = ctx.sampling.k, ctx.sample_names, ctx.sample_layers
    gens = generators(ctx.cfg.seed, [ctx.dataset.examples[i].id for i in rows], k)
    batch = sample_answers(ctx.engine, [ctx.prompts.ids[i] for i in rows], gens, ctx.sampling,
                           on_progress=lambda n, t: bar.advance(0, tokens=t))
    for record, extra in zip(records, sample_records(ctx, rows, batch), strict=True):
        record.update(extra)
    indices = [s["positions"] for record in records for s in record["samples"]]
    dtype = numpy_dtype(ctx.meta["dtype"])
    d = int(ctx.meta["hidden_size"])
    out = np.zeros((len(indices), len(layers), len(names), d), dtype=dtype)
    mask = np.zeros((len(indices), len(names)), dtype=bool)
    for start, piece in chunks(batch, ctx.cfg.batch_size):
        stop = start + len(piece.prompt_ids)
        acts, m = piece.gather(indices[start:stop], names, sites=("resid",))
        out[start:stop], mask[start:stop] = acts["resid"][:, layers].astype(dtype), m
    out = out.reshape(len(rows), k, len(layers), len(names), d)[new]
    tensors = {f"samples.resid.{layer}": np.ascontiguousarray(out[:, :, j])
               for j, layer in enumerate(layers)}
    tensors["samples.mask"] = mask.reshape(len(rows), k, len(names))[new].astype(np.uint8)
    return tensors


def flush(writer: RunWriter, pending: Pending, n: int, bar: Progress) -> None:
    if not n:
        return
    try:
        stem = writer.add_shard(*pending.take(n))
    except OSError as exc:
        kept = len(writer.done_indices())
        raise UserError(str(writer.partial), f"cannot write a shard ({exc.strerror or exc}); "
                        f"the {counted(kept, 'example')} written so far "
                        f"{'is' if kept == 1 else 'are'} kept",
                        "free some space, then run the same command with --resume") from None
    bar.checkpoint(f"wrote {Path(stem).name}")


def run_metadata(ctx: RunContext, argv) -> dict:
    import torch
    import transformers

    cfg, loaded, prompts, dataset = ctx.cfg, ctx.loaded, ctx.prompts, ctx.dataset
    stored = store_dtype(cfg)
    n_layers = int(loaded.info["n_layers"])
    sites = {"resid": list(range(n_layers + 1))}
    sites.update({site: list(range(1, n_layers + 1)) for site in cfg.sites if site != "resid"})
    identity = {
        "model": [loaded.info.get("model_id"), loaded.info.get("revision")],
        "dataset": dataset.content_hash, "limit": cfg.limit, "seed": cfg.seed,
        "positions": ctx.names, "prompt": [prompts.kind, cfg.template, prompts.few_shot],
        "max_new_tokens": cfg.max_new_tokens, "sites": sites, "capture": cfg.capture,
        "dtype": [cfg.dtype, stored], "grader": ctx.grader, "extractor": cfg.extractor_model,
        "columns": [cfg.question_column, cfg.answers_column, cfg.id_column, cfg.missing_id],
        "exact_answer": cfg.exact_answer, "baselines": cfg.baselines,
        "groups": [category_of(ctx), cfg.group_column],
        "answers_from": answers_source(cfg), "samples": samples_meta(ctx),
    }
    return {
        "fingerprint": fingerprint(identity),
        "model": loaded.info,
        "tokenizer": {"id": loaded.info.get("model_id"),
                      "class": type(loaded.tokenizer).__name__,
                      "chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
                      "vocab_size": len(loaded.tokenizer),
                      "padding": "left for generation, right for reforward (probeheat pads)"},
        "prompt": {"template": cfg.template, "kind": prompts.kind, "few_shot": prompts.few_shot,
                   "stop_on_newline": prompts.stop_on_newline},
        "dataset": {"name": dataset.name, "source": dataset.source, "license": dataset.license,
                    "content_hash": dataset.content_hash, "n_rows": len(dataset.examples),
                    "skipped": dataset.skipped, "limit": cfg.limit, "seed": cfg.seed},
        "grader": ctx.grader,
        "exact_answer_policy": "extractor" if cfg.extractor_model else "heuristic",
        "exact_answer_rule": cfg.exact_answer,
        "extractor_model": cfg.extractor_model,
        "baselines": baselines_meta(ctx),
        "generation": {"greedy": True, "max_new_tokens": cfg.max_new_tokens,
                       "batch_size": cfg.batch_size,
                       "capture": "reforward" if ctx.replay else cfg.capture,
                       "answers_from": answers_source(cfg)},
        "samples": samples_meta(ctx),
        "positions": ctx.names,
        "layers": sites["resid"],
        "sites": sites,
        "layer_meaning": ("resid.0 = token embedding output; resid.k = output of decoder layer "
                          "k-1 (residual stream before the final norm); mlp.k / attn.k = outputs "
                          "of decoder layer k-1's MLP / self-attention block; head.k = input of "
                          "decoder layer k-1's attention output projection (heads x head_dim)"),
        "heads": ctx.heads,
        "hidden_size": int(loaded.info["hidden_size"]),
        "dtype": stored,
        "compute_dtype": cfg.dtype,
        "seed": cfg.seed,
        "versions": {"probeheat": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "command": list(argv) if argv is not None else sys.argv,
        "created": now_iso(),
    }


def answers_source(cfg: RunConfig) -> dict | None:
    """The run whose answers this one reuses (--answers-from), by id and content hash."""
    if cfg.answers_from is None:
        return None
    from ..bundle import open_run

    source = open_run(cfg.answers_from)
    return {"id": source.id, "content_hash": source.content_hash}


def category_of(ctx: RunContext) -> str | None:
    return ctx.cfg.category_column or ctx.dataset.category_column


def baselines_meta(ctx: RunContext) -> dict:
    """What the run stored for the probe's baselines, or why not."""
    from .p_true import p_true_meta

    if not ctx.cfg.baselines:
        return {"absent": "the run was made with --no-baselines",
                "category_column": category_of(ctx), "group_column": ctx.cfg.group_column}
    return {"token_logprobs": "log p of each generated token (the greedy choice), full vocab",
            "p_true": p_true_meta(ctx.prompts.kind == "chat"),
            "category_column": category_of(ctx), "group_column": ctx.cfg.group_column}


def say(cfg: RunConfig, text: str) -> None:
    if cfg.progress_mode != "quiet":
        print(text, file=sys.stderr)


def report(ctx: RunContext, path: Path, totals: Totals, elapsed: float) -> None:
    """The run's last lines: the whole run's numbers, and this session's share."""
    from ..bundle import open_run

    run = open_run(path)
    n, correct = run.n_examples, int(run.meta.get("n_correct", 0))
    session = (f"this session {counted(totals.done, 'example')}, accuracy "
               f"{totals.correct / max(totals.done, 1):.1%}, {elapsed:.1f} s")
    lines = [f"wrote {path}: {counted(n, 'example')}, accuracy {correct / max(n, 1):.1%}"
             + (f" ({session}; {totals.done_before} resumed)" if totals.done_before
                else f" ({elapsed:.1f} s)")]
    missing: dict[str, int] = {}
    for record in run.records():
        for name in record.get("missing", {}):
            missing[name] = missing.get(name, 0) + 1
    if missing:
        lines.append("positions missing (examples): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(missing.items())))
    for line in lines:
        say(ctx.cfg, line)
    skipped = ctx.dataset.skipped
    if skipped:  # a warning about the user's data: shown even with --quiet
        print(f"skipped {len(skipped)} bad dataset rows, e.g. row {skipped[0][0]}: "
              f"{skipped[0][1]}", file=sys.stderr)
