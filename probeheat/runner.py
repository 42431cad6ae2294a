"""`probeheat run`: dataset -> prompts -> batched greedy answers + activations -> run bundle.

The pieces: probeheat.data (datasets, grading, exact answers), probeheat.models (loading,
prompts), probeheat.capture (generation with capture at every layer), probeheat.positions
(names -> indices) and probeheat.bundle.RunWriter (shards, resume). This module wires them
and keeps the books: progress, resume, data-parallel ranks, the run's metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .bundle import RunAlreadyComplete, RunWriter
from .bundle.base import now_iso
from .errors import UserError
from .positions import parse_positions, prompt_lookback, resolve_positions

STORE_DTYPES = ("auto", "float32", "float16", "bfloat16")
SITES = ("resid", "mlp", "attn")


@dataclass
class RunConfig:
    out: Path
    model: str = "smollm2-135m-instruct"
    dataset: str = "world-facts"
    limit: int | None = None
    seed: int = 0
    positions: list[str] = field(default_factory=lambda: ["default"])
    template: str = "auto"
    few_shot: int = 0
    max_new_tokens: int = 64
    batch_size: int = 16
    shard_size: int = 128
    device: str = "auto"
    dtype: str = "float32"
    store_dtype: str = "auto"
    device_map: str | None = None
    trust_remote_code: bool = False
    revision: str | None = None
    capture: str = "generate"
    sites: list[str] = field(default_factory=lambda: ["resid"])
    grader: str | None = None
    extractor_model: str | None = None
    question_column: str = "question"
    answers_column: str = "answers"
    id_column: str | None = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    threads: int | None = None


def check_config(cfg: RunConfig) -> list[str]:
    """Validate what can be checked before anything heavy loads; returns the positions."""
    names = parse_positions(cfg.positions)
    if cfg.store_dtype not in STORE_DTYPES:
        raise UserError("--store-dtype", f"unknown dtype {cfg.store_dtype!r}", f"use one of {', '.join(STORE_DTYPES)}")
    for site in cfg.sites:
        if site not in SITES:
            raise UserError("--sites", f"unknown site {site!r}", f"use any of {', '.join(SITES)}")
    if "resid" not in cfg.sites:
        raise UserError("--sites", "the residual stream ('resid') must be captured", "add resid to --sites")
    if cfg.capture not in ("generate", "reforward"):
        raise UserError("--capture", f"unknown mode {cfg.capture!r}", "use generate or reforward")
    for name, value in (("--batch-size", cfg.batch_size), ("--shard-size", cfg.shard_size),
                        ("--max-new-tokens", cfg.max_new_tokens)):
        if value < 1:
            raise UserError(name, f"must be at least 1 (got {value})", f"pass {name} 1 or more")
    if cfg.limit is not None and cfg.limit < 1:
        raise UserError("--limit", f"must be at least 1 (got {cfg.limit})", "omit it to use every question")
    out, partial = Path(cfg.out), Path(cfg.out).with_name(Path(cfg.out).name + ".partial")
    if out.exists() and not (cfg.resume or cfg.overwrite):
        raise UserError(str(out), "already holds a bundle", "pass --overwrite to replace it or choose another --out")
    if partial.exists() and not (cfg.resume or cfg.overwrite):
        raise UserError(str(partial), "holds an unfinished run", "pass --resume to continue it, or --overwrite to start again")
    return names


def store_dtype(cfg: RunConfig) -> str:
    """On-disk dtype: bf16/fp16 models keep theirs; float32 runs store float16 unless told."""
    if cfg.store_dtype != "auto":
        return cfg.store_dtype
    return cfg.dtype if cfg.dtype in ("bfloat16", "float16") else "float16"


def numpy_dtype(name: str):
    import ml_dtypes

    return {"float32": np.float32, "float16": np.float16, "bfloat16": ml_dtypes.bfloat16}[name]


def fingerprint(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        import torch.distributed as dist

        if not dist.is_initialized():
            backend = "nccl" if _cuda_available() else "gloo"
            dist.init_process_group(backend=backend)
        return cls(rank=dist.get_rank(), world=dist.get_world_size())

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def broadcast_error(self, error: str | None) -> str | None:
        """Share rank 0's set-up failure so every rank stops with the same line."""
        if self.world == 1:
            return error
        import torch.distributed as dist

        box = [error]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def run(cfg: RunConfig, argv: list[str] | None = None) -> Path | None:
    """Carry out a run; returns the bundle path (None on ranks other than 0)."""
    from .data import load_dataset

    names = check_config(cfg)
    dist = Dist.from_env()
    try:
        return _run(cfg, names, dist, argv, load_dataset)
    finally:
        dist.close()


def _run(cfg, names, dist, argv, load_dataset) -> Path | None:
    import torch

    from .capture import CaptureEngine
    from .models import load_model

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    else:
        _say(cfg, f"loading {cfg.model} ...")
    dataset = load_dataset(cfg.dataset, question_column=cfg.question_column,
                           answers_column=cfg.answers_column, id_column=cfg.id_column,
                           limit=cfg.limit, seed=cfg.seed)
    grader = cfg.grader or dataset.grader
    loaded = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype, device_map=cfg.device_map,
                        trust_remote_code=cfg.trust_remote_code, revision=cfg.revision)
    prompts = Prompts(loaded.tokenizer, cfg, dataset)
    meta = run_metadata(cfg, names, dataset, loaded, prompts, grader, argv)
    writer, error = None, None
    if dist.rank == 0:
        try:
            writer = RunWriter(cfg.out, meta, resume=cfg.resume, overwrite=cfg.overwrite)
        except RunAlreadyComplete:
            error = "complete"
        except UserError as exc:
            error = exc.line()
    error = dist.broadcast_error(error)
    if error == "complete":
        _say(cfg, f"{cfg.out}: run already complete; nothing to do")
        return Path(cfg.out) if dist.rank == 0 else None
    if error:
        if dist.rank == 0:
            raise UserError(None, error)
        return None
    dist.barrier()
    if writer is None:
        writer = RunWriter(cfg.out, meta, resume=True, rank=dist.rank)
    done = writer.done_indices()
    todo = [i for i in range(len(dataset.examples)) if i not in done and i % dist.world == dist.rank]
    engine = CaptureEngine(loaded, sites=tuple(cfg.sites), mode=cfg.capture,
                           max_new_tokens=cfg.max_new_tokens,
                           stop_on_newline=prompts.stop_on_newline,
                           lookback=prompt_lookback(names))
    extractor = Extractor(cfg, loaded, engine) if cfg.extractor_model else None
    stats = capture_all(cfg, names, dataset, prompts, engine, writer, todo, grader, extractor,
                        len(done), meta)
    dist.barrier()
    if dist.rank != 0:
        return None
    path = writer.finalize({"finished": now_iso()})
    _report(cfg, path, stats, dataset)
    return path


# Few-shot examples: general-knowledge questions outside every built-in dataset's relations,
# answered in the short style the graders and the exact-answer search expect.
FEW_SHOT = (
    ("What is the chemical symbol for gold?", "Au"),
    ("Who wrote the play Romeo and Juliet?", "William Shakespeare"),
    ("How many legs does a spider have?", "Eight"),
    ("What is the largest planet in the Solar System?", "Jupiter"),
    ("In which year did the first person walk on the Moon?", "1969"),
)


class Prompts:
    """Prompt text and token ids per example."""

    def __init__(self, tokenizer, cfg: RunConfig, dataset):
        from .models.prompts import build_prompt, encode_prompt, prompt_format

        fmt = prompt_format(tokenizer, cfg.template)
        self.kind = fmt.kind
        self.stop_on_newline = fmt.stop_on_newline
        if not 0 <= cfg.few_shot <= len(FEW_SHOT):
            raise UserError("--few-shot", f"must be between 0 and {len(FEW_SHOT)} (got {cfg.few_shot})",
                            f"pass --few-shot {len(FEW_SHOT)} or less")
        shots = list(FEW_SHOT[:cfg.few_shot])
        self.few_shot = shots
        self.text = [build_prompt(tokenizer, e.question, template=cfg.template, few_shot=shots)
                     for e in dataset.examples]
        self.ids = [encode_prompt(tokenizer, t) for t in self.text]


def run_metadata(cfg, names, dataset, loaded, prompts, grader, argv) -> dict:
    import torch
    import transformers

    stored = store_dtype(cfg)
    n_layers = int(loaded.info["n_layers"])
    sites = {"resid": list(range(n_layers + 1))}
    for site in cfg.sites:
        if site != "resid":
            sites[site] = list(range(1, n_layers + 1))
    identity = {
        "model": [loaded.info.get("model_id"), loaded.info.get("revision")],
        "dataset": dataset.content_hash, "limit": cfg.limit, "seed": cfg.seed, "positions": names,
        "prompt": [prompts.kind, cfg.template, prompts.few_shot], "max_new_tokens": cfg.max_new_tokens,
        "sites": sites, "capture": cfg.capture, "dtype": [cfg.dtype, stored], "grader": grader,
        "extractor": cfg.extractor_model, "columns": [cfg.question_column, cfg.answers_column],
    }
    return {
        "fingerprint": fingerprint(identity),
        "model": loaded.info,
        "tokenizer": {"id": loaded.info.get("model_id"),
                      "class": type(loaded.tokenizer).__name__,
                      "chat_template": bool(getattr(loaded.tokenizer, "chat_template", None)),
                      "vocab_size": len(loaded.tokenizer)},
        "prompt": {"template": cfg.template, "kind": prompts.kind, "few_shot": prompts.few_shot,
                   "stop_on_newline": prompts.stop_on_newline},
        "dataset": {"name": dataset.name, "source": dataset.source, "license": dataset.license,
                    "content_hash": dataset.content_hash, "n_rows": len(dataset.examples),
                    "skipped": dataset.skipped, "limit": cfg.limit, "seed": cfg.seed},
        "grader": grader,
        "exact_answer_policy": "extractor" if cfg.extractor_model else "heuristic",
        "extractor_model": cfg.extractor_model,
        "generation": {"greedy": True, "max_new_tokens": cfg.max_new_tokens,
                       "batch_size": cfg.batch_size, "capture": cfg.capture},
        "positions": names,
        "layers": sites["resid"],
        "sites": sites,
        "layer_meaning": ("resid.0 = token embedding output; resid.k = output of decoder layer "
                          "k-1 (residual stream before the final norm); mlp.k / attn.k = outputs "
                          "of decoder layer k-1's MLP / self-attention block"),
        "hidden_size": int(loaded.info["hidden_size"]),
        "dtype": stored,
        "compute_dtype": cfg.dtype,
        "seed": cfg.seed,
        "versions": {"probeheat": __version__, "torch": torch.__version__,
                     "transformers": transformers.__version__, "python": platform.python_version()},
        "command": list(argv) if argv is not None else sys.argv,
        "created": now_iso(),
    }


class Extractor:
    """The study's model-based exact-answer extraction for wrong answers (or NO ANSWER)."""

    def __init__(self, cfg: RunConfig, loaded, engine):
        from .capture import CaptureEngine
        from .models import load_model

        if cfg.extractor_model in ("self", cfg.model):
            self.engine = engine
        else:
            other = load_model(cfg.extractor_model, device=cfg.device, dtype=cfg.dtype,
                               device_map=cfg.device_map, trust_remote_code=cfg.trust_remote_code)
            self.engine = CaptureEngine(other, sites=("resid",), mode="generate", max_new_tokens=24,
                                        stop_on_newline=True, lookback=1)
        self.tokenizer = self.engine.loaded.tokenizer

    def extract_many(self, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        from .data.exact import make_extractor_prompt
        from .models.prompts import build_prompt

        if not pairs:
            return {}
        texts = [build_prompt(self.tokenizer, make_extractor_prompt(q, a)) for q, a in pairs]
        outputs = self.engine.generate_text(texts, max_new_tokens=24)
        return {pair: out.strip().splitlines()[0].strip() if out.strip() else "NO ANSWER"
                for pair, out in zip(pairs, outputs, strict=True)}


@dataclass
class Stats:
    examples: int = 0
    correct: int = 0
    tokens: int = 0
    skipped_before: int = 0
    started: float = field(default_factory=time.perf_counter)
    missing: dict = field(default_factory=dict)


def capture_all(cfg, names, dataset, prompts, engine, writer, todo, grader, extractor, n_done, meta):
    """Generate, grade, locate and gather for every example to do; write shards as they fill."""
    from .capture import length_batches

    stats = Stats(skipped_before=n_done)
    dtype = numpy_dtype(meta["dtype"])
    pending = Pending()
    with progress_bar(cfg, len(todo), n_done) as bar:
        for batch_rows in length_batches([len(prompts.ids[i]) for i in todo], cfg.batch_size):
            rows = [todo[r] for r in batch_rows]
            batch = engine.generate([prompts.ids[i] for i in rows])
            records = answer_records(rows, batch, dataset, prompts, engine, names, grader, extractor)
            indices = [r["positions"] for r in records]
            acts, mask = batch.gather(indices, names)
            pending.add(records, {f"{site}.{k}": acts[site][:, j].astype(dtype)
                                  for site, layers in meta["sites"].items()
                                  for j, k in enumerate(layers)}, mask)
            stats.examples += len(rows)
            stats.correct += sum(r["correct"] for r in records)
            stats.tokens += int(batch.n_tokens)
            for r in records:
                for name in r["missing"]:
                    stats.missing[name] = stats.missing.get(name, 0) + 1
            if pending.n >= cfg.shard_size:
                pending.flush(writer)
            bar.advance(len(rows), stats)
        pending.flush(writer)
    return stats


class Pending:
    """Examples captured but not yet written: a shard's worth at most."""

    def __init__(self):
        self.records, self.tensors, self.masks = [], {}, []

    @property
    def n(self) -> int:
        return len(self.records)

    def add(self, records, tensors, mask) -> None:
        self.records += records
        for name, value in tensors.items():
            self.tensors.setdefault(name, []).append(value)
        self.masks.append(mask)

    def flush(self, writer) -> None:
        if not self.records:
            return
        writer.add_shard(self.records, {k: np.concatenate(v) for k, v in self.tensors.items()},
                         np.concatenate(self.masks))
        self.__init__()


def answer_records(rows, batch, dataset, prompts, engine, names, grader, extractor) -> list[dict]:
    """Decode, grade and locate the exact answer of each row, then resolve its positions."""
    from .data.exact import locate_exact_answer
    from .data.graders import grade

    tokenizer = engine.loaded.tokenizer
    answers = [tokenizer.decode(ids, skip_special_tokens=True) for ids in batch.generated_ids]
    grades = [grade(a, dataset.examples[i].answers, grader) for i, a in zip(rows, answers, strict=True)]
    extracted = {}
    if extractor is not None:
        wrong = [(dataset.examples[i].question, a) for i, a, g in zip(rows, answers, grades, strict=True) if not g.correct]
        extracted = extractor.extract_many(wrong)
    records = []
    for k, i in enumerate(rows):
        example, gen_ids = dataset.examples[i], batch.generated_ids[k]
        extract_fn = (lambda q, a: extracted[(q, a)]) if extractor is not None else None
        exact = locate_exact_answer(tokenizer, gen_ids, answers[k], grades[k], example.question,
                                    extract_fn=extract_fn)
        resolved = resolve_positions(names, prompt_len=len(prompts.ids[i]), gen_len=len(gen_ids),
                                     span=exact.span, span_missing_reason=exact.reason)
        records.append({
            "index": i, "id": example.id, "question": example.question, "answers": example.answers,
            "prompt": prompts.text[i], "answer": answers[k], "correct": bool(grades[k].correct),
            "grader": grader, "matched_alias": grades[k].matched_alias,
            "exact_answer": exact.text, "exact_answer_source": exact.source,
            "exact_span": list(exact.span) if exact.span else None,
            "prompt_len": len(prompts.ids[i]), "gen_len": len(gen_ids),
            "stop_reason": batch.stop_reasons[k],
            "positions": resolved.index, "missing": resolved.missing,
        })
    return records


class progress_bar:
    """A rich progress bar with examples/s, tokens/s, ETA and running accuracy."""

    def __init__(self, cfg: RunConfig, total: int, done_before: int):
        self.cfg, self.total, self.done_before = cfg, total, done_before
        self.progress = None

    def __enter__(self):
        if self.cfg.quiet:
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]run[/]"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[acc]}"),
            transient=False,
        )
        self.progress.start()
        note = f" (resuming: {self.done_before} done)" if self.done_before else ""
        self.task = self.progress.add_task("run", total=self.total, rate=note, acc="")
        return self

    def advance(self, n: int, stats: Stats) -> None:
        if self.progress is None:
            return
        elapsed = max(time.perf_counter() - stats.started, 1e-9)
        rate = f"{stats.examples / elapsed:.2f} ex/s  {stats.tokens / elapsed:.0f} tok/s"
        acc = f"acc {stats.correct / max(stats.examples, 1):.1%}"
        self.progress.update(self.task, advance=n, rate=rate, acc=acc)

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()


def _say(cfg: RunConfig, text: str) -> None:
    if not cfg.quiet:
        print(text, file=sys.stderr)


def _report(cfg: RunConfig, path: Path, stats: Stats, dataset) -> None:
    elapsed = time.perf_counter() - stats.started
    lines = [f"wrote {path}: {stats.examples} examples this session"
             + (f" (+{stats.skipped_before} resumed)" if stats.skipped_before else "")
             + f", accuracy {stats.correct / max(stats.examples, 1):.1%}, {elapsed:.1f} s"]
    if stats.missing:
        lines.append("positions missing (examples): "
                     + ", ".join(f"{k} {v}" for k, v in sorted(stats.missing.items())))
    for line in lines:
        _say(cfg, line)
    if dataset.skipped:  # a warning about the user's data: shown even with --quiet
        print(f"skipped {len(dataset.skipped)} bad dataset rows, e.g. row {dataset.skipped[0][0]}: "
                     f"{dataset.skipped[0][1]}", file=sys.stderr)


def config_dict(cfg: RunConfig) -> dict:
    out = asdict(cfg)
    out["out"] = str(cfg.out)
    return out
