"""Per-head probing: site "head" (the input of each layer's attention output projection),
head grids (one probe per layer x head at each position, fitted batched), families,
calibration metrics and figures of head grids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from test_capture import PROMPTS, tiny

from probeheat.errors import UserError
from probeheat.run.capture import CaptureEngine, head_info

H, HD = 4, 8  # the tiny test models: 4 heads of 8 dims (hidden 32)


# -- the reference: attention heads computed by hand from each module's weights ---------------

def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def _causal_heads(q, k, v) -> torch.Tensor:
    """softmax(q k^T / sqrt(hd) + causal mask) v for [H, T, hd] each -> [T, H * hd]."""
    T = q.shape[1]
    scores = q @ k.transpose(1, 2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf)
    out = torch.softmax(scores.double(), -1).to(q.dtype) @ v  # [H, T, hd]
    return out.transpose(0, 1).reshape(T, -1)


def llama_heads(layer, x: torch.Tensor, config) -> torch.Tensor:
    """The per-head outputs of a llama decoder layer for one sequence x [T, d]: RMSNorm,
    q/k/v projections, rotary embedding (rope_theta), grouped keys and values, causal
    softmax attention; heads concatenated in head order."""
    attn, T = layer.self_attn, x.shape[0]
    h = layer.input_layernorm(x)
    q = attn.q_proj(h).view(T, -1, HD).transpose(0, 1)
    k = attn.k_proj(h).view(T, -1, HD).transpose(0, 1)
    v = attn.v_proj(h).view(T, -1, HD).transpose(0, 1)
    theta = config.rope_parameters["rope_theta"]
    inv = 1.0 / theta ** (torch.arange(0, HD, 2, dtype=torch.float32) / HD)
    angles = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
    groups = q.shape[0] // k.shape[0]
    k, v = k.repeat_interleave(groups, 0), v.repeat_interleave(groups, 0)
    return _causal_heads(q, k, v)


def gpt2_heads(layer, x: torch.Tensor, config) -> torch.Tensor:
    """GPT-2: LayerNorm, the fused c_attn projection split into q, k, v, causal attention."""
    T = x.shape[0]
    q, k, v = layer.attn.c_attn(layer.ln_1(x)).split(config.n_embd, -1)
    q, k, v = (t.view(T, H, HD).transpose(0, 1) for t in (q, k, v))
    return _causal_heads(q, k, v)


@torch.inference_mode()
def reference_heads(loaded, sequence: list[int]) -> list[torch.Tensor]:
    """[T, H * hd] per decoder layer for one unpadded sequence, by hand."""
    model = loaded.model
    out = model(input_ids=torch.tensor([sequence]), output_hidden_states=True)
    is_llama = hasattr(model, "model")
    layers = model.model.layers if is_llama else model.transformer.h
    by_hand = llama_heads if is_llama else gpt2_heads
    return [by_hand(layer, out.hidden_states[i][0], model.config)
            for i, layer in enumerate(layers)]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize("mode", ["generate", "reforward"])
def test_head_capture_equals_attention_heads_computed_by_hand(arch, mode):
    loaded = tiny(arch)
    engine = CaptureEngine(loaded, sites=("resid", "head"), mode=mode, max_new_tokens=4,
                           lookback=3)
    assert engine.widths["head"] == H * HD
    batch = engine.generate(PROMPTS)  # padded rows: the capture must not see the padding
    names = ["last_q", "first", "last"]
    where = [{"last_q": p - 1, "first": p, "last": p + g - 1}
             for p, g in zip(batch.prompt_lens, batch.gen_lens, strict=True)]
    acts, mask = batch.gather(where, names)
    assert mask.all() and acts["head"].shape == (len(PROMPTS), 3, 3, H * HD)
    for b, sequence in enumerate(batch.sequences):
        ref = reference_heads(loaded, sequence)
        for j, name in enumerate(names):
            for layer, heads in enumerate(ref):
                np.testing.assert_allclose(acts["head"][b, layer, j], heads[where[b][name]],
                                           atol=2e-5, rtol=1e-4)


def test_the_projection_maps_the_capture_to_the_attention_output():
    """o_proj(head.k) is the self-attention output (site attn) at the same token."""
    loaded = tiny("llama")
    engine = CaptureEngine(loaded, sites=("resid", "attn", "head"), mode="reforward",
                           max_new_tokens=3)
    batch = engine.generate(PROMPTS)
    acts, _ = batch.gather([{"x": p - 1} for p in batch.prompt_lens], ["x"])
    layers = loaded.model.model.layers
    for k, layer in enumerate(layers):
        mapped = layer.self_attn.o_proj(torch.as_tensor(acts["head"][:, k, 0])).detach()
        np.testing.assert_allclose(mapped.numpy(), acts["attn"][:, k, 0], atol=1e-5)


def test_head_info_names_heads_and_the_module():
    assert head_info(tiny("llama").model)["module"] == "self_attn.o_proj"
    info = head_info(tiny("gpt2").model)
    assert (info["n_heads"], info["head_dim"], info["module"]) == (H, HD, "attn.c_proj")


def test_an_architecture_without_a_known_projection_is_one_line_naming_the_class():
    loaded = tiny("llama")
    for layer in loaded.model.model.layers:
        del layer.self_attn.o_proj
    with pytest.raises(UserError) as err:
        head_info(loaded.model)
    line = err.value.line()
    assert "\n" not in line and "LlamaForCausalLM" in line and "o_proj" in line
    assert "self_attn" in line and "c_proj" in line
    with pytest.raises(UserError, match="LlamaForCausalLM"):
        CaptureEngine(loaded, sites=("resid", "head"))
