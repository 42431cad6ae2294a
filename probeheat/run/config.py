"""`RunConfig`: every setting of a run, validated before anything heavy loads."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bundle.run import check_run_out
from ..errors import UserError
from ..progress import MODES as PROGRESS_MODES
from .positions import parse_positions

STORE_DTYPES = ("auto", "float32", "float16", "bfloat16")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")
SITES = ("resid", "mlp", "attn", "head")
CAPTURE_MODES = ("generate", "reforward")
DEVICES = ("auto", "cpu", "cuda")
EXACT_POLICIES = ("study", "symmetric")


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
    missing_id: str = "skip"
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    threads: int | None = None
    progress: str = "auto"  # a probeheat.progress mode
    log_interval: float = 30.0
    verbose: bool = False  # let third-party libraries print their own bars and warnings
    exact_answer: str = "study"  # "study" (alias for correct answers) or "symmetric"
    category_column: str | None = None  # default: the dataset's own (world-facts: relation)
    group_column: str | None = None  # examples sharing a value never straddle a split
    baselines: bool = True  # token log-probabilities and p(True) per example
    answers_from: Path | None = None  # reuse this run's answers: no generation, one re-forward
    samples: int = 0  # K sampled answers per question beside the greedy one (0: none)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50  # 0: off (the study's sampling used transformers' default, 50)
    sample_layers: str | None = None  # a layer selection (None: every resid layer)
    sample_positions: list[str] = field(
        default_factory=lambda: ["exact_answer_last", "-1"])

    @property
    def progress_mode(self) -> str:
        return "quiet" if self.quiet else self.progress


def _at_least(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UserError(name, f"must be an integer of at least {low} (got {value!r})",
                        f"pass {name} {max(low, 1)} or more")


def check_config(cfg: RunConfig) -> list[str]:
    """Validate what can be checked before anything heavy loads; returns the positions."""
    names = parse_positions(cfg.positions)
    for flag, value, choices in (("--store-dtype", cfg.store_dtype, STORE_DTYPES),
                                 ("--dtype", cfg.dtype, COMPUTE_DTYPES),
                                 ("--capture", cfg.capture, CAPTURE_MODES),
                                 ("--device", cfg.device, DEVICES),
                                 ("--log-format", cfg.progress, PROGRESS_MODES),
                                 ("--exact-answer", cfg.exact_answer, EXACT_POLICIES)):
        if value not in choices:
            raise UserError(flag, f"unknown value {value!r}", f"use one of {', '.join(choices)}")
    check_sites(cfg.sites)
    for name, value in (("--batch-size", cfg.batch_size), ("--shard-size", cfg.shard_size),
                        ("--max-new-tokens", cfg.max_new_tokens)):
        _at_least(name, value, 1)
    _at_least("--seed", cfg.seed, 0)
    _at_least("--few-shot", cfg.few_shot, 0)
    if cfg.limit is not None:
        _at_least("--limit", cfg.limit, 1)
    if cfg.threads is not None:
        _at_least("--threads", cfg.threads, 1)
    if not (math.isfinite(cfg.log_interval) and cfg.log_interval > 0):
        raise UserError("--log-interval", f"must be a positive number of seconds "
                        f"(got {cfg.log_interval})", "pass e.g. --log-interval 30")
    check_sampling(cfg)
    if cfg.grader is not None:
        from ..data.graders import get_grader

        get_grader(cfg.grader)  # an unknown grader is refused before the model loads
    check_run_out(Path(cfg.out), resume=cfg.resume, overwrite=cfg.overwrite)
    return names


def check_sampling(cfg: RunConfig) -> list[str]:
    """--samples and its options; returns the sample positions (empty without samples)."""
    if isinstance(cfg.samples, bool) or not isinstance(cfg.samples, int) or cfg.samples < 0 \
            or cfg.samples == 1:
        raise UserError("--samples", f"must be 0 (no sampling) or at least 2 (got "
                        f"{cfg.samples!r}): error types need several samples of a question",
                        "pass e.g. --samples 10")
    if not cfg.samples:
        return []
    if cfg.answers_from is not None:
        raise UserError("--samples", "cannot be combined with --answers-from (which reuses "
                        "greedy answers only)", "drop one of them")
    if not (isinstance(cfg.temperature, int | float) and math.isfinite(cfg.temperature)
            and cfg.temperature > 0):
        raise UserError("--temperature", f"must be a positive number with --samples (got "
                        f"{cfg.temperature})", "pass e.g. --temperature 1.0")
    if not (math.isfinite(cfg.top_p) and 0 < cfg.top_p <= 1):
        raise UserError("--top-p", f"must be in (0, 1] (got {cfg.top_p})", "pass e.g. 1.0")
    _at_least("--top-k", cfg.top_k, 0)
    if cfg.sample_layers is not None:
        from ..selection import parse

        parse(cfg.sample_layers, "--sample-layers")
    return parse_positions(cfg.sample_positions, "--sample-positions")


def check_sites(sites: list[str]) -> None:
    for site in sites:
        if site not in SITES:
            raise UserError("--sites", f"unknown site {site!r}", f"use any of {', '.join(SITES)}")
    if not sites or "resid" not in sites:
        raise UserError("--sites", "the residual stream ('resid') must be captured",
                        "add resid to --sites")


def store_dtype(cfg: RunConfig) -> str:
    """On-disk dtype: bf16/fp16 models keep theirs; float32 runs store float16 unless told."""
    if cfg.store_dtype != "auto":
        return cfg.store_dtype
    return cfg.dtype if cfg.dtype in ("bfloat16", "float16") else "float16"


def numpy_dtype(name: str):
    if name == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return {"float32": np.float32, "float16": np.float16}[name]


def fingerprint(parts: dict) -> str:
    """Hash of every input that defines a run: resume refuses a partial with another one."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
