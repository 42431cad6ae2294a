"""The side effect of a steering vector: how far it moves next-token distributions on
ordinary text (probeheat/steer/neutral.py).

For each vector, every neutral text is read once with the vector added at the layer where
the sweep adds it: at every token (``--at generated``: generated tokens all carry it) or
at the last token only (``--at prompt``). The score is KL(p || q) in nats, p the unsteered
next-token distribution and q the steered one, over the full vocabulary, averaged over the
positions the vector reaches (every position of the text, or its last), then per text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .engine import SteerEngine
from .neutral import NEUTRAL_TEXTS


class NeutralKL:
    """``kl(deltas)`` -> [R, S]: the mean KL of each of R vectors on each of S texts."""

    def __init__(self, engine: SteerEngine, texts: Sequence[str] = NEUTRAL_TEXTS,
                 batch_size: int = 32):
        from ..models.prompts import encode_prompt

        tok = engine.base.tokenizer
        self.engine, self.batch_size = engine, max(int(batch_size), 1)
        self.ids = [[int(i) for i in encode_prompt(tok, t)] for t in texts]
        if any(len(ids) < 2 for ids in self.ids):
            raise ValueError("every neutral text needs at least two tokens")
        self.last_only = engine.at == "prompt"
        zero = torch.zeros(len(self.ids), engine.hidden_size)
        base = self._logprobs(list(range(len(self.ids))), zero)
        # KL(p || q) = sum p log p - sum p log q: the first term and p once per text
        self.p = [logp.exp() for logp in base]
        self.neg_entropy = [(p * logp).sum(-1) for p, logp in zip(self.p, base, strict=True)]

    @torch.inference_mode()
    def _logprobs(self, texts: list[int], deltas: torch.Tensor) -> list[torch.Tensor]:
        """log-softmax [T_s, V] (or [1, V] with last_only) of texts[i] steered by
        deltas[i]."""
        base, hook = self.engine.base, self.engine.hook
        ids, mask, positions = base._left_padded([self.ids[s] for s in texts])
        hook.delta = deltas.to(ids.device, base.capture_dtype)[:, None, :]
        hook.where, hook.keep = ("last" if self.last_only else "all"), 0
        keep = {"logits_to_keep": 1} if self.last_only and base._keep_kw else {}
        with hook.installed():
            logits = base.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                use_cache=False, **keep).logits
        logp = torch.log_softmax(logits.float(), -1)
        if self.last_only:
            return [logp[i, -1:].cpu() for i in range(len(texts))]
        return [logp[i, ids.shape[1] - len(self.ids[s]):].cpu() for i, s in enumerate(texts)]

    def kl(self, deltas: torch.Tensor) -> np.ndarray:
        """[R, S] mean KL(unsteered || steered) per vector and text, in nats."""
        pairs = [(r, s) for r in range(deltas.shape[0]) for s in range(len(self.ids))]
        out = np.zeros((deltas.shape[0], len(self.ids)))
        for start in range(0, len(pairs), self.batch_size):
            chunk = pairs[start:start + self.batch_size]
            steered = self._logprobs([s for _, s in chunk], deltas[[r for r, _ in chunk]])
            for (r, s), logq in zip(chunk, steered, strict=True):
                out[r, s] = float((self.neg_entropy[s] - (self.p[s] * logq).sum(-1)).mean())
        return np.maximum(out, 0.0)  # rounding can leave -1e-9 for a zero vector
