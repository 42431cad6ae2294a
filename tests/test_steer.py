"""`probeheat steer`: the intervention, its batching, its checks and its bundle."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from hostile import cli

from probeheat.bundle import open_bundle, open_steer, verify_bundle
from probeheat.errors import UserError
from probeheat.models.load import LoadedModel
from probeheat.run.capture import CaptureEngine
from probeheat.steer.engine import SteerEngine
from probeheat.steer.hooks import SteerHook, check_hookable
from probeheat.steer.metrics import mcnemar_exact, wilson
from probeheat.steer.settings import parse_alphas, parse_cell

# --- tiny models built here -----------------------------------------------------------------


def llama(tokenizer, hidden: int, layers: int, seed: int = 0, init: float = 0.1):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden,
                         intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=init,
                         max_position_embeddings=256, eos_token_id=tokenizer.eos_token_id,
                         bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def engine_of(model, tokenizer, max_new_tokens: int = 6) -> CaptureEngine:
    return CaptureEngine(LoadedModel(model, tokenizer), sites=("resid",), mode="generate",
                         max_new_tokens=max_new_tokens, lookback=64)


PROMPTS = ["The capital of France is", "It is in South America.", "Q: What is it?\nA:",
           "Rome", "Côte d'Ivoire and São Tomé are"]


@pytest.fixture(scope="module")
def random_engine(bpe):
    return engine_of(llama(bpe, 32, 3), bpe)


def prompt_ids(tokenizer) -> list[list[int]]:
    return [tokenizer(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]


# --- alpha = 0 is the run --------------------------------------------------------------------

@pytest.mark.parametrize("layer", [0, 1, 3])
def test_alpha_zero_leaves_answers_and_captured_activations_identical(random_engine, bpe, layer):
    prompts = prompt_ids(bpe)
    plain = random_engine.generate(prompts)
    lengths = [len(p) + len(g) for p, g in zip(plain.prompt_ids, plain.generated_ids,
                                                strict=True)]
    names = [f"-{k}" for k in range(1, max(lengths) + 1)]
    indices = [{n: t - int(n[1:]) for n in names if t - int(n[1:]) >= 0} for t in lengths]
    acts, mask = plain.gather(indices, names)
    steer = SteerEngine(random_engine, layer, "generated", lookback=64)
    zero = steer.generate(prompts, torch.zeros(len(prompts), 32))
    assert zero.generated_ids == plain.generated_ids
    assert zero.stop_reasons == plain.stop_reasons
    for p, name in enumerate(names):
        got, present = zero.states([ix.get(name) for ix in indices])
        assert np.array_equal(present, mask[:, p])
        assert np.array_equal(got[present], acts["resid"][present, layer, p])  # bit for bit


def test_a_nonzero_vector_changes_what_comes_after_but_not_the_layer_it_is_added_to(
        random_engine, bpe):
    prompts = prompt_ids(bpe)[:2]
    steer = SteerEngine(random_engine, 2, "generated", lookback=2)
    zero = steer.generate(prompts, torch.zeros(2, 32))
    pushed = steer.generate(prompts, torch.full((2, 32), 3.0))
    assert pushed.generated_ids != zero.generated_ids
    # the kept state at the last prompt token is read before the vector is added there
    assert torch.equal(pushed.prompt_states[:, -1], zero.prompt_states[:, -1])


def naive_steered(model, prompt: list[int], layer: int, delta: torch.Tensor, at: str,
                  n: int) -> list[int]:
    """The intervention written the slow, obvious way: no KV cache, no batch, the whole
    sequence recomputed at every step with delta added at the steered positions."""
    module = model.model.layers[layer - 1]
    plen = len(prompt)

    def add(_module, _args, output):
        hidden = output if isinstance(output, torch.Tensor) else output[0]
        hidden = hidden.clone()
        stop = plen if at == "prompt" else hidden.shape[1]
        hidden[:, plen - 1:stop] += delta
        return hidden if isinstance(output, torch.Tensor) else (hidden,) + tuple(output[1:])

    ids = list(prompt)
    handle = module.register_forward_hook(add)
    try:
        with torch.inference_mode():
            for _ in range(n):
                logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits
                ids.append(int(logits[0, -1].argmax()))
    finally:
        handle.remove()
    return ids[plen:]


@pytest.mark.parametrize("at", ["generated", "prompt"])
def test_the_intervention_equals_the_obvious_implementation(bpe, at):
    model = llama(bpe, 32, 3, seed=2)
    base = engine_of(model, bpe, max_new_tokens=5)
    steer = SteerEngine(base, 2, at)
    prompts = prompt_ids(bpe)
    gen = torch.Generator().manual_seed(7)
    deltas = 6.0 * torch.randn(len(prompts), 32, generator=gen)
    naive = [naive_steered(model, p, 2, deltas[k], at, 5) for k, p in enumerate(prompts)]
    # rows stop at different steps (then leave the batch): each keeps its own vector
    base.eos_ids = {naive[0][1], naive[2][3]}
    batch = steer.generate(prompts, deltas)
    lengths = set()
    for k, tokens in enumerate(naive):
        stop = next((i + 1 for i, t in enumerate(tokens) if t in base.eos_ids), len(tokens))
        assert batch.generated_ids[k] == tokens[:stop]
        lengths.add(stop)
    assert len(lengths) > 1
    assert batch.generated_ids != steer.generate(prompts, 0 * deltas).generated_ids


# --- a planted direction ---------------------------------------------------------------------

def planted(bpe, hidden: int = 256):
    """A 2-layer llama whose residual stream is the token embedding at every layer (the
    blocks write nothing), whose embeddings all lean +1 along a unit vector v, and whose
    unembedding reads only v: token A for +v, token B for -v. The sign of the residual's
    component along v decides the next token."""
    model = llama(bpe, hidden, 2, seed=1, init=0.02)
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(hidden, generator=gen)
    v /= v.norm()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        emb.copy_(0.05 * torch.randn(emb.shape, generator=gen) + v)
        head = model.lm_head.weight
        head.copy_(1e-3 * torch.randn(head.shape, generator=gen))
        a, b = 40, 41
        head[a], head[b] = 10 * v, -10 * v
    return model, v, (a, b)


def test_steering_along_a_planted_direction_flips_the_output_random_directions_do_not(bpe):
    model, v, (a, b) = planted(bpe)
    base = engine_of(model, bpe, max_new_tokens=3)
    steer = SteerEngine(base, 1, "generated")
    prompts = prompt_ids(bpe)
    norm = 3.0  # three times the planted margin
    plain = steer.generate(prompts, torch.zeros(len(prompts), v.numel()))
    assert all(set(g) == {a} for g in plain.generated_ids)
    along = steer.generate(prompts, (-norm * v).expand(len(prompts), -1))
    assert all(set(g) == {b} for g in along.generated_ids)
    assert steer.generate(prompts, (norm * v).expand(len(prompts), -1)).generated_ids \
        == plain.generated_ids
    from probeheat.steer.directions import random_directions

    for u in random_directions(5, v.numel(), seed=0):
        delta = torch.as_tensor(norm * u, dtype=torch.float32).expand(len(prompts), -1)
        assert steer.generate(prompts, delta).generated_ids == plain.generated_ids


def test_at_prompt_steers_the_first_token_only(bpe):
    model, v, (a, b) = planted(bpe)
    steer = SteerEngine(engine_of(model, bpe, max_new_tokens=3), 1, "prompt")
    prompts = prompt_ids(bpe)[:2]
    out = steer.generate(prompts, (-3.0 * v).expand(2, -1)).generated_ids
    assert all(g == [b, a, a] for g in out)


# --- batching ------------------------------------------------------------------------------

@pytest.mark.parametrize("at", ["generated", "prompt"])
def test_rows_of_mixed_alphas_in_one_batch_equal_each_row_alone(random_engine, bpe, at):
    prompts = prompt_ids(bpe) * 2
    gen = torch.Generator().manual_seed(5)
    units = torch.randn(3, 32, generator=gen)
    units /= units.norm(dim=1, keepdim=True)
    alphas = [-4.0, 0.0, 2.0, 8.0, -1.0, 0.0, 4.0, -8.0, 1.0, 6.0]
    deltas = torch.stack([a * units[k % 3] for k, a in enumerate(alphas)])
    steer = SteerEngine(random_engine, 2, at, lookback=2)
    batch = steer.generate(prompts, deltas)
    zero = steer.generate(prompts, torch.zeros_like(deltas))
    assert batch.generated_ids != zero.generated_ids  # the vectors do something
    for k in range(len(prompts)):
        alone = steer.generate([prompts[k]], deltas[k:k + 1])
        assert alone.generated_ids[0] == batch.generated_ids[k]
        T = len(prompts[k]) + len(alone.generated_ids[0])
        for i in range(len(prompts[k]) - 2, T):
            one = alone.states([i])[0][0]
            many = batch.states([i if j == k else None for j in range(len(prompts))])[0][k]
            assert one.any() and np.allclose(one, many, atol=1e-5), (k, i)


def test_the_neutral_kl_is_zero_without_a_vector_and_matches_its_definition(random_engine):
    from probeheat.steer.kl import NeutralKL

    texts = ("The kettle clicked off.", "Rain tapped on the roof all afternoon.")
    steer = SteerEngine(random_engine, 2, "generated")
    kl = NeutralKL(steer, texts, batch_size=3)
    gen = torch.Generator().manual_seed(11)
    deltas = torch.cat([torch.zeros(1, 32), 5.0 * torch.randn(2, 32, generator=gen)])
    got = kl.kl(deltas)
    assert got.shape == (3, 2) and np.allclose(got[0], 0.0, atol=1e-6) and (got[1:] > 1e-4).all()
    model, ids = random_engine.model, kl.ids[1]
    with torch.inference_mode():
        p = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
        steer.hook.delta, steer.hook.where, steer.hook.keep = deltas[2:3, None, :], "all", 0
        with steer.hook.installed():
            q = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], -1)
    direct = float((p.exp() * (p - q)).sum(-1).mean())
    assert abs(got[2, 1] - direct) < 1e-5


# --- refusals ------------------------------------------------------------------------------

def test_a_layer_the_model_lacks_or_that_never_runs_is_one_line(random_engine):
    with pytest.raises(UserError, match="layer 9 does not exist"):
        SteerEngine(random_engine, 9)
    stray = torch.nn.ModuleList([torch.nn.Identity(), torch.nn.Identity()])
    with pytest.raises(UserError, match="never ran"):
        check_hookable(random_engine, SteerHook(stray, 1, 32))


def test_arguments_are_checked_before_anything_is_read():
    assert parse_alphas("4,-4") == ((-4.0, 0.0, 4.0), True)
    assert parse_alphas("-2,0,2,2") == ((-2.0, 0.0, 2.0), False)
    for bad in ("nan,0", "inf", "1e400", "2,,3", "x"):
        with pytest.raises(UserError, match="--alphas"):
            parse_alphas(bad)
    assert parse_cell("23:exact_answer_last") == (23, "exact_answer_last")
    assert parse_cell("L0:-1") == (0, "-1")
    for bad in ("23", "a:b", ":-1"):
        with pytest.raises(UserError, match="--cell"):
            parse_cell(bad)


def test_the_verdict_is_one_line_in_the_issues_form():
    from probeheat.steer.metrics import sweep_table, verdict

    alphas, Q = [-4.0, 0.0, 4.0], 100
    correct = np.zeros((3, 3, Q), bool)
    for d, counts in enumerate([(20, 29, 40), (27, 29, 30), (28, 29, 29)]):
        for a, k in enumerate(counts):
            correct[a, d, :k] = True
    changed = correct ^ correct[1:2]
    kl = np.array([[0.5, 0.1, 0.2], [0.0, 0.0, 0.0], [0.021, 0.3, 0.1]])
    table = sweep_table(alphas, ["probe", "random-1", "random-2"], correct, changed,
                        np.zeros((3, 3, Q)), kl)
    line = verdict(table, 23, "exact_answer_last")
    assert line.startswith("probe direction at L23 exact_answer_last: accuracy 0.29 → 0.40 "
                           "[0.31, 0.50] at α=+4; random directions: 0.29–0.30; KL 0.021; "
                           "11% of answers changed, McNemar p ")
    assert "\n" not in line and "inside" not in line
    steady = correct.copy()
    steady[:, 0] = correct[1, 0]  # the probe's direction moves nothing; the random ones do
    flat = sweep_table(alphas, ["probe", "random-1", "random-2"], steady,
                       np.zeros_like(changed), np.zeros((3, 3, Q)), kl)
    assert verdict(flat, 5, "-1").startswith(
        "probe direction at L5 -1: accuracy 0.29 at every α (-4..+4); random directions: "
        "0.27–0.30; KL up to 0.5")


def test_wilson_and_mcnemar_by_hand():
    lo, hi = wilson(29, 100)
    assert abs(lo - 0.2096) < 1e-3 and abs(hi - 0.3863) < 1e-3
    before = np.array([1, 1, 0, 0, 0, 0, 0, 0], bool)
    after = np.array([0, 1, 1, 1, 1, 1, 0, 0], bool)  # 4 gained, 1 lost: p = 2 * 6/32
    assert abs(mcnemar_exact(before, after) - 0.375) < 1e-12
    assert mcnemar_exact(before, before) == 1.0


# --- the command, end to end on a tiny run ---------------------------------------------------

WORDS = ("apple river stone cloud green seven table music light paper horse glass bread "
         "chair smile ocean tiger piano lemon candle").split()


@pytest.fixture(scope="module")
def tiny_run(tiny_model_folder, tmp_path_factory):
    """A run of a random tiny model whose gold answers are words its own answers contain
    for every other question (so a probe has right and wrong answers), and its grid."""
    from probeheat.bundle import open_run
    from probeheat.probe.grid import make_grid
    from probeheat.run.config import RunConfig
    from probeheat.run.pipeline import run

    root = tmp_path_factory.mktemp("steer")
    rows = [{"id": f"q{i}", "question": f"Tell me about the {w} number {i}", "answers": ["zzzz"]}
            for i, w in enumerate(WORDS * 2)]
    common = dict(model=str(tiny_model_folder), template="{question}", max_new_tokens=6,
                  baselines=False, quiet=True, positions=["last_q", "first_answer",
                                                          "exact_answer_last", "-1", "-30"])
    (root / "d1.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    first = open_run(run(RunConfig(out=root / "r1", dataset=str(root / "d1.jsonl"), **common)))
    said = {r["id"]: r["answer"] for r in first.records()}
    for i, row in enumerate(rows):
        words = re.findall(r"[A-Za-z]{3,}", said[row["id"]])
        if i % 2 == 0 and words:
            row["answers"] = [words[0]]
    (root / "d2.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = run(RunConfig(out=root / "run", dataset=str(root / "d2.jsonl"), **common))
    grid = make_grid(out, root / "grid", progress=False, controls=False)
    for i, row in enumerate(rows):  # the other half right: another run, another grid
        words = re.findall(r"[A-Za-z]{3,}", said[row["id"]])
        row["answers"] = [words[0]] if i % 2 == 1 and words else ["zzzz"]
    (root / "d3.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    other = run(RunConfig(out=root / "other", dataset=str(root / "d3.jsonl"), **common))
    other_grid = make_grid(other, root / "other-grid", progress=False, controls=False)
    return {"root": root, "run": out, "grid": grid, "other_grid": other_grid}


@pytest.fixture
def no_model(monkeypatch):
    """Loading a model fails the test: refusals must come before it."""
    import probeheat.models

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the refusal")

    monkeypatch.setattr(probeheat.models, "load_model", refuse)


def steer_cli(tiny_run, out, *extra):
    return cli("steer", tiny_run["run"], "--grid", tiny_run["grid"], "--out", out,
               "--random-directions", "2", "--limit", "4", "--quiet", *extra)


def test_the_bundle_verifies_inspects_and_draws(tiny_run, tmp_path):
    out = tmp_path / "steer"
    result = cli("steer", tiny_run["run"], "--grid", tiny_run["grid"], "--out", out,
                 "--random-directions", "2", "--limit", "4", "--alphas", "-3,3",
                 "--cell", "1:exact_answer_last")
    assert result.code == 0, result.err
    assert "added it" in result.err  # no 0 in --alphas: said on stderr
    bundle = open_steer(out)
    assert bundle.alphas == [-3.0, 0.0, 3.0] and bundle.direction_names == [
        "probe", "random-1", "random-2"]
    assert verify_bundle(out) == [] and cli("verify", out).code == 0
    meta = bundle.meta
    assert meta["unsteered_check"]["answers_identical"] and meta["cell"]["layer"] == 1
    assert abs(meta["cell"]["refit_auc"] - meta["cell"]["grid_auc"]) < 1e-6
    table = bundle.table()
    zero = bundle.alphas.index(0.0)
    assert (table["changed"][zero] == 0).all() and (table["kl"][zero] == 0).all()
    assert len(bundle.answers()) == 3 * 3 * 4
    inspected = cli("inspect", out)
    assert inspected.code == 0 and inspected.out.splitlines()[0] == bundle.verdict
    assert bundle.verdict.startswith("probe direction at L1 exact_answer_last: accuracy ")
    figure = cli("export", out, "-o", tmp_path / "steer.pdf")
    assert figure.code == 0, figure.err
    as_table = cli("export", out, "-o", tmp_path / "steer.csv")  # a figure, not a table
    assert as_table.code == 2 and "steer bundle: it exports as a figure" in as_table.err
    assert len(as_table.err.strip().splitlines()) == 1 and not (tmp_path / "steer.csv").exists()
    import probeheat

    with pytest.raises(UserError, match="steer bundle, which has no tidy table view"):
        probeheat.open(out)
    assert_steer_pdf(tmp_path / "steer.pdf")
    assert_band_is_the_random_range(bundle)
    # a changed byte is noticed
    path = out / "steer.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert cli("verify", out).code == 1


def assert_steer_pdf(path):
    """Read the PDF back: one page whose drawing fills the random band's grey and strokes
    the probe's line in its blue (matplotlib writes colours as `r g b rg` / `RG`)."""
    import zlib

    data = path.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type\s*/Page\b", data)) == 1
    streams = b"".join(zlib.decompress(m) for m in
                       re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.S)
                       if m[:1] == b"x")

    def colour(hex_colour, op):  # 10 decimals; a grey has the grey operator, g / G
        r, g, b = (f"{int(hex_colour[i:i + 2], 16) / 255:.10f}".rstrip("0")
                   for i in (1, 3, 5))
        return (f"{r} {op[-1]}" if r == g == b else f"{r} {g} {b} {op}").encode()

    from probeheat.figures.steer import BAND_COLOUR, PROBE_COLOUR

    assert re.search(rb"\b" + re.escape(colour(BAND_COLOUR, "rg")) + rb"\b", streams)  # band
    assert re.search(rb"\b" + re.escape(colour(PROBE_COLOUR, "RG")) + rb"\b", streams)  # line


def assert_band_is_the_random_range(bundle):
    """The grey band spans the random directions' lowest to highest accuracy per alpha."""
    from probeheat.figures.options import FigureOptions
    from probeheat.figures.steer import _figure

    table = bundle.table()
    alphas = np.asarray(bundle.alphas)
    ax = _figure(bundle, table, alphas, FigureOptions(), (3.25, 2.4)).axes[0]
    band = ax.collections[0].get_paths()[0].vertices
    rand = table["accuracy"][:, 1:]
    for k, alpha in enumerate(alphas):
        ys = band[np.isclose(band[:, 0], alpha), 1]
        assert np.isclose(ys.min(), rand[k].min()) and np.isclose(ys.max(), rand[k].max())
    probe_line = [line for line in ax.lines if line.get_marker() == "o"][0]
    assert np.allclose(probe_line.get_ydata(), table["accuracy"][:, 0])


def test_a_grid_of_another_run_is_one_line(tiny_run, tmp_path, no_model):
    result = cli("steer", tiny_run["run"], "--grid", tiny_run["other_grid"], "--out",
                 tmp_path / "s", "--quiet")
    assert result.one_line and "was made from run" in result.err


def test_grids_steer_cannot_use_are_refused_by_name():
    from types import SimpleNamespace

    from probeheat.steer.sweep import check_same_run

    run = SimpleNamespace(id="run-1", content_hash="abc", path="runs/r")

    def grid(**probe):
        return SimpleNamespace(path="grids/g", run_ref={"id": "run-1", "content_hash": "abc"},
                               meta={"probe": {"site": "resid", **probe}})

    check_same_run(run, grid(family="logistic"))
    with pytest.raises(UserError, match="mass-mean family"):
        check_same_run(run, grid(family="mass-mean"))
    with pytest.raises(UserError, match="probes the head site"):
        check_same_run(run, grid(site="head"))
    with pytest.raises(UserError, match="was made from run"):
        check_same_run(SimpleNamespace(id="run-1", content_hash="other", path="r"), grid())


@pytest.mark.parametrize(("extra", "expected"), [
    (["--cell", "1:-30"], "was not fitted"),
    (["--cell", "99:-1"], "has no layer 99"),
    (["--cell", "1:second_answer"], "has no position"),
    (["--alphas", "nan,1"], "not a finite number"),
    (["--alphas", "1,inf"], "not a finite number"),
    (["--random-directions", "0"], "--random-directions"),
    (["--alphas", "1,,2"], "not a comma list"),
    (["--cell", "first_answer"], "not LAYER:POSITION"),
])
def test_bad_input_is_one_line_before_the_model_loads(tiny_run, tmp_path, no_model, extra,
                                                      expected):
    result = steer_cli(tiny_run, tmp_path / "s", *extra)
    assert result.one_line and expected in result.err, result.err
    assert not (tmp_path / "s").exists()


def test_the_unsteered_answers_must_be_the_runs(tiny_run, tmp_path, monkeypatch):
    """A sweep whose alpha = 0 answers differ from the run's stops, loudly, with exit 1."""
    from probeheat.steer import engine as engine_module

    real = engine_module.SteerEngine.generate

    def off_by_one(self, prompts, deltas, on_step=None):
        out = real(self, prompts, deltas, on_step)
        out.generated_ids = [g[:-1] + [(g[-1] + 1) % 100] for g in out.generated_ids]
        return out

    monkeypatch.setattr(engine_module.SteerEngine, "generate", off_by_one)
    result = steer_cli(tiny_run, tmp_path / "s")
    assert result.code == 1 and "alpha=0 did not reproduce the run's answers" in result.err
    assert not (tmp_path / "s").exists()


def test_open_bundle_knows_the_kind(tiny_run, tmp_path):
    out = tmp_path / "steer"
    result = steer_cli(tiny_run, out, "--alphas", "-2,2", "--at", "prompt")
    assert result.code == 0, result.err
    assert "--alphas had no 0; added it" in result.err  # said even with --quiet
    bundle = open_bundle(out)
    assert bundle.kind == "steer" and bundle.meta["at"] == "prompt"
    assert bundle.alphas == [-2.0, 0.0, 2.0]
    assert bundle.meta["questions"]["n"] == 4
