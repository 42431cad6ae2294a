"""The intervention: one vector per batch row added to the residual stream at one layer.

Layer ``k`` means what it means in a run (probeheat/run/capture.py): ``resid.0`` is the
embedding output, i.e. the input of decoder layer 0, and ``resid.k`` (k >= 1) is the
output of decoder layer ``k-1``, before the model's final norm. So steering at layer 0 is
a forward *pre*-hook on decoder layer 0 that changes its input, and steering at layer k a
forward hook on decoder layer ``k-1`` that changes its output: the same tensor the cell's
activations were captured from, and everything downstream (later layers, later tokens
through the KV cache) sees the change.

Each forward, the hook adds ``delta[b]`` ([B, 1, d], the rows now in the batch) where the
current ``where`` allows it: ``"last"`` only at the last column (with left padding, every
row's last prompt token), ``"all"`` at every column (decode steps, whole texts), ``"none"``
nowhere. Before adding, it keeps the unsteered value of the columns asked for
(``keep``): the state the probe reads. That state at layer k depends only on layers
below k, which the intervention never touches, so it equals what an unsteered model
computes on the same tokens.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from ..errors import UserError

WHERE = ("last", "all", "none")


class SteerHook:
    """Adds per-row deltas at one resid layer and keeps the layer's unsteered states."""

    def __init__(self, layers: torch.nn.ModuleList, layer: int, hidden_size: int):
        n = len(layers)
        if not 0 <= layer <= n:
            raise UserError("--cell", f"layer {layer} does not exist in this model "
                            f"(resid layers 0..{n})", f"pass a layer from 0 to {n}")
        self.layers, self.layer, self.hidden_size = layers, layer, hidden_size
        self.delta: torch.Tensor | None = None  # [B, 1, d] for the rows now in the batch
        self.where = "none"
        self.keep = 0  # trailing columns to keep (unsteered) at each forward
        self.kept: torch.Tensor | None = None  # [B, keep, d] of the last forward, on the CPU
        self.calls = 0

    @contextmanager
    def installed(self):
        """Register the hook for the duration of the block."""
        if self.layer == 0:
            handle = self.layers[0].register_forward_pre_hook(self._pre, with_kwargs=True)
        else:
            handle = self.layers[self.layer - 1].register_forward_hook(self._post)
        try:
            yield self
        finally:
            handle.remove()

    def _pre(self, _module, args, kwargs):
        if args:
            return (self.apply(args[0]),) + tuple(args[1:]), kwargs
        return args, {**kwargs, "hidden_states": self.apply(kwargs["hidden_states"])}

    def _post(self, _module, _args, output):
        # Decoder layers return a Tensor in recent transformers and a tuple in older ones.
        if isinstance(output, torch.Tensor):
            return self.apply(output)
        return (self.apply(output[0]),) + tuple(output[1:])

    def apply(self, hidden: torch.Tensor) -> torch.Tensor:
        """The hidden state [B, T, d] with this forward's deltas added."""
        self.calls += 1
        if hidden.dim() != 3 or hidden.shape[-1] != self.hidden_size:
            raise UserError(f"layer {self.layer}", f"the model's hidden state there has shape "
                            f"{list(hidden.shape)}, not [batch, tokens, {self.hidden_size}]",
                            "steer a llama-, GPT-2- or NeoX-style causal LM")
        if self.keep:
            self.kept = hidden[:, -self.keep:, :].detach().to("cpu", copy=True)
        if self.delta is None or self.where == "none":
            return hidden
        delta = self.delta.to(hidden.device, hidden.dtype)
        if delta.shape[0] != hidden.shape[0]:
            raise ValueError(f"steer: {delta.shape[0]} deltas for a batch of {hidden.shape[0]}")
        if self.where == "all":
            return hidden + delta
        mask = torch.zeros(hidden.shape[1], 1, dtype=hidden.dtype, device=hidden.device)
        mask[-1] = 1
        return hidden + delta * mask


def check_hookable(engine, hook: SteerHook) -> None:
    """One tiny forward with the hook installed: refuses a model whose decoder layers are
    skipped or whose hidden state is not [batch, tokens, d] at that layer."""
    ids_t, mask, positions = engine._left_padded([[int(engine.pad_id or 0)] * 2])
    before = hook.calls
    with torch.inference_mode(), hook.installed():
        engine._forward(ids_t, mask, positions, None)
    if hook.calls == before:
        raise UserError(f"layer {hook.layer}", "the hook on this layer never ran: the model "
                        "does not call its decoder layers as modules", "steer another model")
