"""K sampled answers per question beside the greedy one (`run --samples K`).

Prefill once, decode K times. A batch's prompts are run once (left-padded, as for the
greedy answers); their KV cache and last logits are repeated K times, and the B*K rows
decode together, each leaving the batch once it stops.

Reproducible per (question, sample). Sample k of a question draws its random numbers from
its own generator, seeded from the run's seed, the question's id and k, one uniform per
step; so it is the same whatever the batch size, the batch's other rows, the number of
ranks or the resume point (up to float rounding between batch shapes: a token changes
only when a uniform falls within ~1e-6 of a boundary of the cumulative distribution,
which is summed in float64).

A token is drawn as transformers' sampling draws it (temperature, then top-k, then top-p
on the tempered distribution), by inverse transform: the kept probabilities, sorted in
descending order (ties by token id), renormalised and summed up; the first token whose
cumulative probability exceeds the row's uniform is taken.

Activations of samples come from one re-forward over prompt + sample (in chunks of the
run's batch size), at the sample layers and positions only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .capture import CaptureEngine, GeneratedBatch


@dataclass(frozen=True)
class Sampling:
    k: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 50  # 0: off

    def as_meta(self) -> dict:
        return {"k": self.k, "temperature": self.temperature, "top_p": self.top_p,
                "top_k": self.top_k,
                "generator": "torch.Generator per (question, sample), seeded with the first 8 "
                             "bytes of sha256('probeheat-sample:{seed}:{id}:{k}'); one "
                             "uniform per step, inverse transform over the kept tokens sorted "
                             "by probability (ties by token id)",
                "greedy_in_samples": False}


def sample_seed(seed: int, example_id: str, k: int) -> int:
    digest = hashlib.sha256(f"probeheat-sample:{seed}:{example_id}:{k}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generators(seed: int, example_ids: Sequence[str], k: int) -> list[torch.Generator]:
    """One generator per row of a sampled batch: question b's sample j is row b*k + j."""
    out = []
    for example_id in example_ids:
        for j in range(k):
            g = torch.Generator()
            g.manual_seed(sample_seed(seed, str(example_id), j))
            out.append(g)
    return out


def choose_tokens(logits: torch.Tensor, uniforms: torch.Tensor, spec: Sampling) -> torch.Tensor:
    """Next tokens [R] of logits [R, V] for uniforms [R] in [0, 1) (see the module)."""
    # float64: a float32 running sum over a 50k vocabulary errs by more than a rare token's
    # probability, so the same uniform could pick another token in another batch shape.
    probs = torch.softmax(logits.double() / spec.temperature, dim=-1)
    if 0 < spec.top_k < probs.shape[-1]:
        kept, order = torch.topk(probs, spec.top_k, dim=-1, sorted=True)
    else:
        kept, order = torch.sort(probs, dim=-1, descending=True, stable=True)
    if spec.top_p < 1.0:
        kept = kept / kept.sum(-1, keepdim=True)
        before = kept.cumsum(-1) - kept  # mass of the more likely tokens
        kept = torch.where(before < spec.top_p, kept, torch.zeros_like(kept))
    cdf = (kept / kept.sum(-1, keepdim=True)).cumsum(-1)
    pick = torch.searchsorted(cdf, uniforms.to(cdf)[:, None], right=True)
    pick = pick.clamp(max=cdf.shape[-1] - 1)
    return order.gather(1, pick)[:, 0]


@torch.inference_mode()
def sample_answers(engine: CaptureEngine, prompt_ids: Sequence[Sequence[int]],
                   gens: list[torch.Generator], spec: Sampling,
                   on_progress=None) -> GeneratedBatch:
    """K samples of each prompt (row b*k + j = prompt b, sample j); the batch's states are
    gathered by a re-forward."""
    prompts = [list(map(int, p)) for p in prompt_ids]
    k = spec.k
    if len(gens) != len(prompts) * k:
        raise ValueError(f"sample_answers: {len(gens)} generators for {len(prompts)} x {k} rows")
    lens = torch.tensor([len(p) for p in prompts])
    ids, mask, positions = engine._left_padded(prompts)
    out = engine._forward(ids, mask, positions, None)
    past = engine._cache_of(out)
    past.batch_repeat_interleave(k)
    logits = out.logits[:, -1, :].repeat_interleave(k, dim=0)
    mask, lens = mask.repeat_interleave(k, dim=0), lens.repeat_interleave(k).to(ids.device)

    def choose(step_logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        u = torch.stack([torch.rand((), generator=gens[r]) for r in rows])
        return choose_tokens(step_logits, u, spec).to(step_logits.device)

    gen, reasons, logps = engine._loop(logits, past, mask, lens, engine.max_new_tokens,
                                       (engine.stop_on_newline, None, on_progress, choose))
    repeated = [p for p in prompts for _ in range(k)]
    return GeneratedBatch(repeated, gen, reasons, logps, engine=engine, capture="reforward")


def chunks(batch: GeneratedBatch, size: int) -> list[tuple[int, GeneratedBatch]]:
    """(first row, sub-batch) pieces of at most `size` rows, gathered by re-forward."""
    out = []
    for start in range(0, len(batch.prompt_ids), size):
        stop = start + size
        out.append((start, GeneratedBatch(batch.prompt_ids[start:stop],
                                          batch.generated_ids[start:stop],
                                          batch.stop_reasons[start:stop],
                                          batch.token_logprobs[start:stop],
                                          engine=batch.engine, capture="reforward")))
    return out
