"""Synthetic run bundles with a planted signal, for tests, samples and benchmarks.

No model is involved: labels are drawn at random and the hidden states carry a signal whose
strength depends on (layer, position), peaking in the middle layers at the exact-answer
positions as in the study's figures. Records follow the format's semantics exactly: each
example has a prompt and answer length, an exact-answer span (or none, with the reason, for
one example in seven), and positions resolved by the same code `run` uses. Every record
says ``"synthetic": true``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle.base import now_iso
from .bundle.records import make_record
from .bundle.run import RunWriter, tensor_name
from .run.positions import BUILTIN_POSITIONS, resolve_positions

SYNTH_POSITIONS = list(BUILTIN_POSITIONS)
NO_SPAN = "no exact answer: the answer looks like a refusal (synthetic)"


@dataclass(frozen=True)
class Synthetic:
    """What a synthetic run looks like."""

    n: int = 160
    n_layers: int = 17
    hidden: int = 8
    positions: tuple[str, ...] = tuple(SYNTH_POSITIONS)
    dtype: str = "float16"
    seed: int = 0
    shard_size: int = 64
    correct_rate: float = 0.4
    signal: float = 1.0  # 0: the hidden states carry nothing about the label
    baselines: bool = False  # records with token log-probabilities, p(True) and a category
    samples: int = 0  # K sampled answers per question (each right with correct_rate)
    sample_positions: tuple[str, ...] = ("exact_answer_last", "-1")
    heads: tuple[int, int] | None = None  # (n_heads, head_dim): site "head" at layers 1..


def signal_strength(layer: int, n_layers: int, position: str) -> float:
    depth = np.exp(-((layer / max(n_layers - 1, 1) - 0.45) ** 2) / 0.06)
    weight = {"exact_answer_last": 1.0, "exact_answer_after_last": 1.0, "exact_answer_first": 0.8,
              "last_q": 0.5}.get(position, 0.35)
    return float(0.05 + 0.7 * weight * depth)


def write_synthetic_run(out: Path, *, overwrite: bool = False, **shape) -> Path:
    """Write a synthetic run bundle; ``shape`` takes the fields of ``Synthetic``."""
    if "positions" in shape and shape["positions"] is not None:
        shape["positions"] = tuple(shape["positions"])
    s = Synthetic(**{k: v for k, v in shape.items() if v is not None})
    rng = np.random.default_rng(s.seed)
    correct = rng.random(s.n) < s.correct_rate
    direction = rng.standard_normal(s.hidden)
    direction /= np.linalg.norm(direction)
    writer = RunWriter(out, _meta(s), overwrite=overwrite)
    for start in range(0, s.n, s.shard_size):
        rows = list(range(start, min(s.n, start + s.shard_size)))
        records = [_record(i, bool(correct[i]), list(s.positions)) for i in rows]
        if s.baselines:
            for record in records:
                _add_baselines(record, rng)
        mask = np.array([[p in r["positions"] for p in s.positions] for r in records])
        sign = np.where(correct[rows], -1.0, 1.0)
        tensors = {}
        for layer in range(s.n_layers):
            noise = rng.standard_normal((len(rows), len(s.positions), s.hidden))
            strength = np.array([signal_strength(layer, s.n_layers, p) for p in s.positions])
            x = noise + s.signal * sign[:, None, None] * strength[None, :, None] * direction
            tensors[tensor_name("resid", layer)] = (x * mask[:, :, None]).astype(s.dtype)
        if s.heads:
            tensors.update(_add_heads(s, sign, mask, rng))
        if s.samples:
            tensors.update(_add_samples(s, records, rng, direction))
        writer.add_shard(records, tensors, mask)
    return writer.finalize({"finished": now_iso()})


def head_gain(head: int, n_heads: int) -> float:
    """How strongly head ``head`` carries the planted signal: head 1 most, the last none."""
    return 0.0 if head == n_heads - 1 else (1.6 if head == 1 else 0.4)


def _add_heads(s: Synthetic, sign, mask, rng) -> dict[str, np.ndarray]:
    """Site "head": per layer k >= 1, n_heads blocks of head_dim; head h carries the
    layer's and position's signal times :func:`head_gain` along its own direction."""
    H, hd = s.heads
    direction = rng.standard_normal((H, hd))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    gain = np.array([head_gain(h, H) for h in range(H)])
    out = {}
    for layer in range(1, s.n_layers):
        strength = np.array([signal_strength(layer, s.n_layers, p) for p in s.positions])
        x = rng.standard_normal((len(sign), len(s.positions), H, hd)) + s.signal * \
            sign[:, None, None, None] * strength[None, :, None, None] * \
            (gain[:, None] * direction)[None, None]
        x = x.reshape(len(sign), len(s.positions), H * hd) * mask[:, :, None]
        out[tensor_name("head", layer)] = x.astype(s.dtype)
    return out


def _add_samples(s: Synthetic, records: list[dict], rng, direction) -> dict[str, np.ndarray]:
    """K samples per question: each right with ``correct_rate``, a wrong one naming one of
    three wrong places, one in ten without an exact answer; their hidden states carry the
    same planted signal as the greedy answers'. Records get samples and error types."""
    from .data.error_types import Sample, error_types, sample_counts

    n, k, names = len(records), s.samples, list(s.sample_positions)
    right = rng.random((n, k)) < s.correct_rate
    wrong_pick = rng.integers(0, 3, (n, k))
    for q, record in enumerate(records):
        samples = []
        for j in range(k):
            i = record["index"]
            place = f"Place {i}" if right[q, j] else f"Place {i + 1 + wrong_pick[q, j]}"
            span = None if (q + j) % 10 == 9 else (3, 4)
            resolved = resolve_positions(names, prompt_len=record["prompt_len"], gen_len=6,
                                         span=span, span_missing_reason=NO_SPAN)
            samples.append({"answer": f"The answer is {place}.", "correct": bool(right[q, j]),
                            "exact_answer": place if span else None,
                            "exact_span": list(span) if span else None, "refused": False,
                            "stop_reason": "eos", "gen_len": 6, "positions": resolved.index,
                            "missing": resolved.missing})
        counts = sample_counts([Sample(x["correct"], x["exact_answer"]) for x in samples])
        record["samples"] = samples
        record["error_type"] = {**counts, "types": error_types(counts)}
    mask = np.array([[[p in x["positions"] for p in names] for x in r["samples"]]
                     for r in records]).reshape(n, k, len(names))
    sign = np.where(right, -1.0, 1.0)
    out = {}
    for layer in range(s.n_layers):
        strength = np.array([signal_strength(layer, s.n_layers, p) for p in names])
        x = rng.standard_normal((n, k, len(names), s.hidden)) + s.signal * \
            sign[:, :, None, None] * strength[None, None, :, None] * direction
        out[f"samples.resid.{layer}"] = (x * mask[..., None]).astype(s.dtype)
    out["samples.mask"] = mask.astype(np.uint8)
    return out


def _add_baselines(record: dict, rng) -> None:
    """Baseline inputs that carry a little signal: wrong answers' tokens are a bit less
    likely, their p(True) a bit lower; the category is one of three, errors spread evenly."""
    shift = 0.0 if record["correct"] else -0.5
    record["token_logprobs"] = [round(float(min(0.0, v)), 6) for v in
                                rng.normal(-0.6 + shift, 0.5, record["gen_len"])]
    p = float(1 / (1 + np.exp(-(rng.normal(0.3 + shift, 1.0)))))
    record["p_true"] = {"answer": round(p, 6),
                        "exact_answer": round(p, 6) if record["exact_span"] else None}
    record["category"] = ("capital", "currency", "continent")[record["index"] % 3]


def _meta(s: Synthetic) -> dict:
    layers = list(range(s.n_layers))
    extra = {"baselines": {"token_logprobs": "synthetic", "p_true": {"synthetic": True},
                           "category_column": "relation", "group_column": None}} \
        if s.baselines else {"baselines": {"absent": "a synthetic run without baselines",
                                           "category_column": None, "group_column": None}}
    return {**extra,
        "fingerprint": f"synthetic-{s.n}-{s.n_layers}-{s.hidden}-{s.seed}-{s.dtype}-"
                       f"{s.correct_rate}-{s.signal}-{s.baselines}-{','.join(s.positions)}-"
                       f"{s.samples}-{s.heads}",
        "synthetic": True,
        "model": {"model_id": "synthetic", "n_layers": s.n_layers - 1, "hidden_size": s.hidden},
        "dataset": {"name": "synthetic", "content_hash": f"seed-{s.seed}"},
        "positions": list(s.positions), "layers": layers,
        "sites": {"resid": layers, **({"head": layers[1:]} if s.heads else {})},
        "heads": {"n_heads": s.heads[0], "head_dim": s.heads[1], "module": "synthetic",
                  "what": "synthetic per-head blocks"} if s.heads else None,
        "hidden_size": s.hidden, "dtype": s.dtype, "compute_dtype": s.dtype, "seed": s.seed,
        "layer_meaning": "resid k: synthetic stand-in for the output of decoder layer k-1",
        "samples": {"k": s.samples, "layers": layers, "positions": list(s.sample_positions),
                    "temperature": 1.0, "top_p": 1.0, "top_k": 0, "site": "resid",
                    "generator": "synthetic"} if s.samples else None,
    }


def _record(i: int, correct: bool, positions: list[str]) -> dict:
    place = f"Place {i if correct else i + 1}"
    answer = f"The answer is {place}."
    prompt_len, gen_len = 10 + i % 3, 7 + i % 4  # answer tokens: The answer is Place N . EOS
    span = None if i % 7 == 3 else (3, 4)  # "Place N" are generated tokens 3 and 4
    if i % 5 == 1 and span:  # an answer cut off right after its exact answer (no EOS)
        gen_len, span = 5, (3, 4)
    resolved = resolve_positions(positions, prompt_len=prompt_len, gen_len=gen_len, span=span,
                                 span_missing_reason=NO_SPAN)
    return make_record(
        i, f"synthetic/{i:04d}", correct, question=f"Which place is number {i}?",
        answers=[f"Place {i}"], prompt=f"Which place is number {i}?", answer=answer,
        grader="synthetic", matched_alias=f"Place {i}" if correct else None,
        exact_answer=place if span else None, exact_answer_source="synthetic",
        exact_span=list(span) if span else None, prompt_len=prompt_len, gen_len=gen_len,
        stop_reason="eos", positions=resolved.index, missing=resolved.missing,
        clamped=resolved.clamped, synthetic=True)
