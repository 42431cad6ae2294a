"""Batched greedy decoding in which every row carries its own steering vector.

The decoding is the run's (probeheat/run/capture.py, ``CaptureEngine``): left padding with
position ids ``cumsum(mask) - 1``, a KV cache, rows that leave the batch once they have
stopped and their stop token has been fed (so its state exists), the same stop rules.
What is added is one vector per row (``deltas`` [B, d]), applied by a ``SteerHook`` at
the cell's layer to the rows still in the batch, and the unsteered state at that layer of
every token, from which the probe's score of the new answer is read. Rows with different
alphas and directions therefore share batches: a sweep costs what the same number of
greedy answers costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..run.capture import CaptureEngine, _select
from .hooks import SteerHook, check_hookable

ON = {"generated": ("last", "all"), "prompt": ("last", "none")}  # (prefill, decode steps)


@dataclass
class SteeredBatch:
    """Greedy answers of one batch and the unsteered layer states of their tokens."""

    prompt_ids: list[list[int]]
    generated_ids: list[list[int]]
    stop_reasons: list[str]
    prompt_states: torch.Tensor  # [B, W, d]: the last W prompt tokens of each row
    step_states: list[torch.Tensor] = field(default_factory=list)  # per step [rows, d]
    step_rows: list[list[int]] = field(default_factory=list)  # the rows of each step

    def state(self, b: int, index: int) -> torch.Tensor | None:
        """Row b's state at ``index`` of its unpadded prompt + generated ids (None when
        that token was not kept: a prompt token before the window)."""
        plen = len(self.prompt_ids[b])
        if index >= plen:
            step = index - plen
            return self.step_states[step][self.step_rows[step].index(b)]
        window = self.prompt_states.shape[1]
        return self.prompt_states[b, window - plen + index] if index >= plen - window else None

    def states(self, indices: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
        """([B, d] float32, present [B]) at one index per row (None: absent)."""
        d = self.prompt_states.shape[-1]
        out, present = np.zeros((len(indices), d), np.float32), np.zeros(len(indices), bool)
        for b, index in enumerate(indices):
            value = None if index is None else self.state(b, int(index))
            if value is not None:
                out[b], present[b] = value.float().numpy(), True
        return out, present


class SteerEngine:
    """``generate(prompts, deltas)``: greedy answers with ``deltas[b]`` added at the layer."""

    def __init__(self, base: CaptureEngine, layer: int, at: str = "generated",
                 lookback: int = 1):
        self.base, self.at, self.lookback = base, at, max(int(lookback), 1)
        d = int(base.model.config.get_text_config().hidden_size)
        self.hook = SteerHook(base.layers, layer, d)
        self.hidden_size = d
        check_hookable(base, self.hook)

    @torch.inference_mode()
    def generate(self, prompt_ids: Sequence[Sequence[int]], deltas: torch.Tensor,
                 on_step: Callable[[int], None] | None = None) -> SteeredBatch:
        """Greedy answers of a batch, row b steered by ``deltas[b]`` ([B, d])."""
        base, hook = self.base, self.hook
        prompts = [list(map(int, p)) for p in prompt_ids]
        if len(prompts) != deltas.shape[0]:
            raise ValueError(f"steer: {deltas.shape[0]} deltas for {len(prompts)} prompts")
        ids, mask, positions = base._left_padded(prompts)
        deltas = deltas.to(ids.device, base.capture_dtype)[:, None, :]
        prefill, steps = ON[self.at]
        with hook.installed():
            hook.delta, hook.where = deltas, prefill
            hook.keep = min(self.lookback, ids.shape[1])
            out = base._forward(ids, mask, positions, None)
            batch = SteeredBatch(prompts, [], [], hook.kept)
            hook.keep, hook.where = 1, steps
            lens = torch.tensor([len(p) for p in prompts], device=ids.device)
            self._loop(out, mask, lens, (deltas, batch, on_step))
        return batch

    def _loop(self, out, mask, lens, state) -> None:
        """The run's greedy loop (CaptureEngine, recording): each step feeds every row still
        in the batch, stopped rows once more, and keeps the layer's state of the new token."""
        deltas, batch, on_step = state
        base, hook, limit = self.base, self.hook, self.base.max_new_tokens
        n = len(lens)
        gen: list[list[int]] = [[] for _ in range(n)]
        reasons: list[str | None] = [None] * n
        rows = list(range(n))
        logits, past = out.logits[:, -1, :], base._cache_of(out)
        for step in range(limit):
            tok = logits.float().argmax(-1)
            for b, t in zip(rows, tok.tolist(), strict=True):
                gen[b].append(t)
                reasons[b] = base._stop_reason(t, len(gen[b]), limit, base.stop_on_newline)
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            hook.delta = deltas[torch.tensor(rows, device=deltas.device)]
            out = base._forward(tok[:, None].to(mask.device), mask, (lens + step)[:, None], past)
            logits, past = out.logits[:, -1, :], base._cache_of(out)
            batch.step_states.append(hook.kept[:, 0, :])
            batch.step_rows.append(list(rows))
            alive = [i for i, b in enumerate(rows) if reasons[b] is None]
            if on_step is not None:
                on_step(len(rows) - len(alive))
            if not alive:
                break
            rows, past, (logits, mask, lens) = _select(alive, rows, past, logits, mask, lens)
        batch.generated_ids, batch.stop_reasons = gen, [str(r) for r in reasons]
