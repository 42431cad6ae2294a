"""What a steering sweep costs: `probeheat steer` (7 alphas x 6 directions on 100 questions,
i.e. 100 unsteered + 6 x 6 x 100 steered answers, graded, read by the probe, plus the KL on
the neutral texts) against the same number of plain greedy answers, 42 x 100 = 4,200, at
the same batch size (the run engine's greedy decoding, no capture, no grading).

The model is a tiny random llama built here (4 layers, d 128, the built-in model's
tokenizer: 49,152 tokens, so the unembedding is most of its arithmetic), not the built-in
model: 4,200 answers of the built-in model
take tens of minutes on 2 cores. On a model this small the per-step Python work weighs
most, so the ratio is a worst case for the sweep's overhead. The run and grid it steers
are made here too (a first run's answers give every other question a gold answer it
contains, so the probe has right and wrong answers). Target: ratio <= 1.2.

    python benchmarks/steer_cost.py            # 100 questions, 16 new tokens, batch 32
    python benchmarks/steer_cost.py --quick    # 30 questions, 8 new tokens
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from pathlib import Path

import torch

WORDS = ("apple river stone cloud green seven table music light paper horse glass bread "
         "chair smile ocean tiger piano lemon candle").split()


def model_folder(root: Path) -> Path:
    """A random 4-layer llama (d 128) with the built-in model's tokenizer (SmolLM2's,
    Apache-2.0), so that its gibberish answers are made of word pieces."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from probeheat.models.builtin import provision

    tok = AutoTokenizer.from_pretrained(provision("smollm2-135m-instruct")[0])
    config = LlamaConfig(vocab_size=len(tok), hidden_size=128, intermediate_size=256,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=256, eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    folder = root / "tiny"
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def make_run_and_grid(root: Path, folder: Path, n: int, new_tokens: int, batch: int):
    from probeheat.bundle import open_run
    from probeheat.probe.grid import make_grid
    from probeheat.run.config import RunConfig
    from probeheat.run.pipeline import run

    rows = [{"id": f"q{i}", "question": f"Tell me about the {WORDS[i % 20]} {i}",
             "answers": ["zzzz"]} for i in range(n)]
    common = dict(model=str(folder), template="{question}", max_new_tokens=new_tokens,
                  batch_size=batch, baselines=False, quiet=True,
                  positions=["last_q", "first_answer", "exact_answer_last", "-1"])
    (root / "d1.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    said = {r["id"]: r["answer"] for r in open_run(run(RunConfig(
        out=root / "r1", dataset=str(root / "d1.jsonl"), **common))).records()}
    for i, row in enumerate(rows):
        words = re.findall(r"[A-Za-z]{3,}", said[row["id"]])
        if i % 2 == 0 and words:
            row["answers"] = [words[0]]
    (root / "d2.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = run(RunConfig(out=root / "run", dataset=str(root / "d2.jsonl"), **common))
    return out, make_grid(out, root / "grid", progress=False, controls=False)


def plain_answers(folder: Path, run_path: Path, copies: int, batch: int, new_tokens: int):
    """(seconds, answers, tokens): each question's prompt `copies` times, greedy."""
    from probeheat.bundle import open_run
    from probeheat.models import load_model
    from probeheat.models.prompts import encode_prompt
    from probeheat.run.capture import CaptureEngine, length_batches

    loaded = load_model(str(folder), device="cpu")
    engine = CaptureEngine(loaded, mode="reforward", max_new_tokens=new_tokens)
    prompts = [encode_prompt(loaded.tokenizer, r["prompt"]) for r in open_run(run_path).records()]
    rows = [p for p in prompts for _ in range(copies)]
    started, tokens = time.perf_counter(), 0
    for chosen in length_batches([len(p) for p in rows], batch):
        tokens += engine.generate([rows[i] for i in chosen]).n_tokens
    return time.perf_counter() - started, len(rows), tokens


def sweep(run_path: Path, grid_path: Path, out: Path, batch: int) -> float:
    from probeheat.steer.settings import SteerSettings
    from probeheat.steer.sweep import steer

    settings = SteerSettings(questions="all", batch_size=batch, device="cpu", progress="quiet")
    started = time.perf_counter()
    steer(run_path, grid_path, out, settings, overwrite=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 questions, 8 new tokens")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: steadier on a shared machine)")
    args = parser.parse_args()
    n, new_tokens = (30, 8) if args.quick else (100, 16)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder = model_folder(root)
        run_path, grid_path = make_run_and_grid(root, folder, n, new_tokens, args.batch_size)
        plain_1, answers, tokens = plain_answers(folder, run_path, 42, args.batch_size, new_tokens)
        steered = sweep(run_path, grid_path, root / "steer", args.batch_size)
        plain_2, _, _ = plain_answers(folder, run_path, 42, args.batch_size, new_tokens)
        from probeheat.bundle import open_steer

        bundle = open_steer(root / "steer")
        rows = bundle.n_questions * (1 + (len(bundle.alphas) - 1) * len(bundle.direction_names))
        bundle_timing = bundle.meta["timing"]
    plain = (plain_1 + plain_2) / 2
    print(f"tiny random llama (4 layers, d 128, vocab 49152), {n} questions, {new_tokens} new "
          f"tokens, batch {args.batch_size}, {args.threads} thread(s)")
    print(f"plain greedy answers: {answers} answers ({tokens} tokens) in {plain_1:.1f} s and "
          f"{plain_2:.1f} s (mean {plain:.1f} s)")
    print(f"steer sweep: {len(bundle.alphas)} alphas x {len(bundle.direction_names)} directions, "
          f"{rows} answers generated (alpha 0 once per question), graded, probed, KL on "
          f"{bundle.meta['kl']['texts']} texts: {steered:.1f} s")
    timing = bundle_timing
    print(f"  of which answering {timing['answers_s']:.1f} s, KL {timing['kl_s']:.1f} s (a "
          "fixed cost: 36 vectors x 20 texts, whatever the number of questions)")
    print(f"ratio sweep / plain: {steered / plain:.2f}x (target <= 1.2)")
    per_plain, per_sweep = plain / answers, timing["answers_s"] / rows
    print(f"per answer generated (answering only, without the KL): {per_sweep * 1e3:.1f} ms "
          f"against {per_plain * 1e3:.1f} ms plain, {per_sweep / per_plain:.2f}x")


if __name__ == "__main__":
    main()
