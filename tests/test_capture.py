"""Batched generation + activation capture on tiny random models (RoPE and absolute positions)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

from probeheat.errors import UserError
from probeheat.models.load import LoadedModel
from probeheat.run.capture import CaptureEngine, decoder_layers, length_batches

VOCAB, EOS, PAD, NEWLINE = 64, 1, 0, 5
SITES = ("resid", "mlp", "attn")
# Different lengths, so batching them pads every row but the longest.
PROMPTS = [[3, 4, 7, 8, 9, 10, 11, 12, 13], [12, 13], [20, 21, 22, 23, 24]]


class StubTokenizer:
    """Token i decodes to "<i>", except NEWLINE which decodes to a newline."""

    pad_token_id, eos_token_id, chat_template, all_special_tokens = PAD, EOS, None, []

    def decode(self, ids, skip_special_tokens=False):
        return "".join("\n" if i == NEWLINE else f"<{i}>" for i in ids)

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [int(w) for w in text.split() if w.isdigit()]}


def tiny(arch: str, dtype=torch.float32) -> LoadedModel:
    torch.manual_seed(0)
    if arch == "llama":
        config = LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64,
                             num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
                             eos_token_id=EOS, pad_token_id=PAD, bos_token_id=2)
    else:
        config = GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=3, n_head=4,
                            eos_token_id=EOS, bos_token_id=2)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    # A random model's argmax is arbitrary; make sure it never hits EOS/newline by chance.
    model.generation_config.eos_token_id = None
    model.config.eos_token_id = None
    return LoadedModel(model, StubTokenizer(), {})


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def loaded(request) -> LoadedModel:
    return tiny(request.param)


def ends(batch) -> list[dict[str, int]]:
    """Indices of last_q, first_answer and the last token of each row."""
    return [{"last_q": p - 1, "first": p, "last": p + g - 1}
            for p, g in zip(batch.prompt_lens, batch.gen_lens, strict=True)]


NAMES = ["last_q", "first", "last"]


@pytest.mark.parametrize("mode", ["generate", "reforward"])
def test_padding_invariance(loaded, mode):
    engine = CaptureEngine(loaded, sites=SITES, mode=mode, max_new_tokens=5, lookback=4)
    batch = engine.generate(PROMPTS)
    acts, mask = batch.gather(ends(batch), NAMES)
    assert mask.all()
    for b, prompt in enumerate(PROMPTS):
        alone = engine.generate([prompt])
        assert alone.generated_ids == [batch.generated_ids[b]]
        one, _ = alone.gather(ends(alone), NAMES)
        for site in SITES:
            np.testing.assert_allclose(one[site][0], acts[site][b], atol=1e-4)


def test_generate_and_reforward_agree(loaded):
    kwargs = dict(sites=SITES, max_new_tokens=6, lookback=3)
    streamed = CaptureEngine(loaded, mode="generate", **kwargs).generate(PROMPTS)
    again = CaptureEngine(loaded, mode="reforward", **kwargs).generate(PROMPTS)
    assert streamed.generated_ids == again.generated_ids
    index = ends(streamed)
    for row, p in zip(index, streamed.prompt_lens, strict=True):
        if p >= 3:  # the 2-token prompt has no q-2: missing there
            row["q-2"] = p - 3
    a, mask_a = streamed.gather(index, ["q-2", *NAMES])
    b, mask_b = again.gather(index, ["q-2", *NAMES])
    assert (mask_a == mask_b).all()
    for site in SITES:
        assert a[site].dtype == np.float32
        np.testing.assert_allclose(a[site], b[site], atol=1e-4)


def test_layers_match_hidden_states_except_post_norm_last(loaded):
    engine = CaptureEngine(loaded, max_new_tokens=3)
    batch = engine.generate(PROMPTS[:1])
    seq = batch.sequences[0]
    acts, _ = batch.gather([{"x": len(seq) - 2}], ["x"])
    with torch.no_grad():
        hidden = loaded.model(torch.tensor([seq]), output_hidden_states=True).hidden_states
    n = engine.n_layers
    assert acts["resid"].shape == (1, n + 1, 1, 32)
    for k in range(n):
        np.testing.assert_allclose(acts["resid"][0, k, 0], hidden[k][0, -2].numpy(), atol=1e-5)
    # transformers' last entry is after the final norm; layer L here is the raw stream.
    assert not np.allclose(acts["resid"][0, n, 0], hidden[n][0, -2].numpy(), atol=1e-3)


def test_stop_rules_eos_newline_and_limit(loaded):
    free = CaptureEngine(loaded, max_new_tokens=6).generate(PROMPTS)
    assert free.stop_reasons == ["max_new_tokens"] * 3
    assert free.gen_lens == [6, 6, 6]
    stop_tok = free.generated_ids[0][2]
    loaded.model.generation_config.eos_token_id = [stop_tok]
    try:
        stopped = CaptureEngine(loaded, max_new_tokens=6).generate(PROMPTS[:1])
    finally:
        loaded.model.generation_config.eos_token_id = None
    cut = free.generated_ids[0].index(stop_tok)
    assert stopped.generated_ids[0] == free.generated_ids[0][:cut + 1]  # stop token included
    assert stopped.stop_reasons == ["eos"]


def test_stop_on_newline_only_when_asked(loaded):
    free = CaptureEngine(loaded, max_new_tokens=6).generate(PROMPTS)
    engine = CaptureEngine(loaded, max_new_tokens=6, stop_on_newline=True)
    engine._newline = {t: False for t in range(VOCAB)}
    engine._newline[free.generated_ids[1][1]] = True  # as if that token's text were "\n"
    batch = engine.generate(PROMPTS)
    cut = free.generated_ids[1].index(free.generated_ids[1][1])
    assert batch.generated_ids[1] == free.generated_ids[1][:cut + 1]
    assert batch.stop_reasons[1] == "newline"
    tokenizer_says = CaptureEngine(loaded, stop_on_newline=True)
    assert tokenizer_says._is_newline(NEWLINE) and not tokenizer_says._is_newline(7)


def test_rows_that_stop_early_keep_their_last_state(loaded):
    free = CaptureEngine(loaded, max_new_tokens=6).generate(PROMPTS)
    stop_tok = free.generated_ids[1][0]
    loaded.model.generation_config.eos_token_id = stop_tok
    try:
        engine = CaptureEngine(loaded, max_new_tokens=6)
        batch = engine.generate(PROMPTS)
        alone = engine.generate([PROMPTS[1]])
    finally:
        loaded.model.generation_config.eos_token_id = None
    assert batch.gen_lens[1] == 1 and batch.stop_reasons[1] == "eos"
    # the row is fed its EOS once, then leaves the batch
    assert 1 in batch.step_rows[0] and all(1 not in rows for rows in batch.step_rows[1:])
    a, _ = batch.gather(ends(batch), NAMES)
    b, _ = alone.gather(ends(alone), NAMES)
    np.testing.assert_allclose(a["resid"][1], b["resid"][0], atol=1e-4)


def test_buffers_hold_only_lookback_prompt_positions(loaded):
    engine = CaptureEngine(loaded, sites=SITES, max_new_tokens=4, lookback=3)
    batch = engine.generate(PROMPTS)
    n = engine.n_layers
    assert batch.prompt_buffer["resid"].shape == (n + 1, 3, 3, 32)
    assert batch.prompt_buffer["mlp"].shape == (n, 3, 3, 32)
    assert len(batch.step_buffer["resid"]) == max(batch.gen_lens)  # one state per new token
    for rows, states in zip(batch.step_rows, batch.step_buffer["resid"], strict=True):
        assert states.shape == (n + 1, len(rows), 32)
    with pytest.raises(ValueError, match="lookback"):
        batch.gather([{"x": 0}, {}, {}], ["x"])  # row 0's prompt has 9 tokens; 0 is not kept


def test_gather_missing_positions_are_zero_and_masked(loaded):
    batch = CaptureEngine(loaded, max_new_tokens=3, lookback=2).generate(PROMPTS)
    rows = ends(batch)
    del rows[1]["first"]
    acts, mask = batch.gather(rows, NAMES)
    assert acts["resid"].shape == (3, 4, 3, 32)
    assert mask.tolist() == [[True] * 3, [True, False, True], [True] * 3]
    assert not acts["resid"][1, :, 1].any()
    assert np.abs(acts["resid"][0, :, 1]).sum() > 0
    with pytest.raises(ValueError, match="outside"):
        batch.gather([{"x": 99}, {}, {}], ["x"])


def test_bfloat16_capture_returns_bfloat16_arrays():
    loaded = tiny("llama", dtype=torch.bfloat16)
    batch = CaptureEngine(loaded, max_new_tokens=2).generate(PROMPTS)
    acts, _ = batch.gather(ends(batch), NAMES)
    assert acts["resid"].dtype == ml_dtypes.bfloat16
    assert np.isfinite(acts["resid"].astype(np.float32)).all()


def test_generate_text_matches_generate(loaded):
    free = CaptureEngine(loaded, max_new_tokens=5).generate(PROMPTS)
    loaded.model.generation_config.eos_token_id = free.generated_ids[2][1]
    try:
        engine = CaptureEngine(loaded, max_new_tokens=5)
        texts = engine.generate_text([" ".join(map(str, p)) for p in PROMPTS], batch_size=2)
        batch = engine.generate(PROMPTS)
    finally:
        loaded.model.generation_config.eos_token_id = None
    assert "eos" in batch.stop_reasons
    assert texts == [StubTokenizer().decode(g) for g in batch.generated_ids]


def test_bad_arguments_are_user_errors(loaded):
    with pytest.raises(UserError, match="site"):
        CaptureEngine(loaded, sites=("resid", "keys"))
    with pytest.raises(UserError, match="mode"):
        CaptureEngine(loaded, mode="fast")
    with pytest.raises(UserError, match="decoder layers"):
        decoder_layers(_NoLayers())


class _NoLayers(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = LlamaConfig(num_hidden_layers=3)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(2, 2)])


def test_length_batches_groups_similar_lengths():
    assert length_batches([5, 1, 9, 2, 5], 2) == [[1, 3], [0, 4], [2]]
