"""probeheat on a GPU: capture against plain generation, and the probe solver on the device.

1. Capture. A model with the shape of an 8B Llama (Llama-3-8B's config: 32 layers, d 4096,
   GQA 32/8 heads, vocab 128256; random bf16 weights built from the config, so nothing is
   downloaded) answers world-facts prompts greedily. probeheat's CaptureEngine (states at
   every layer and the study's 15 positions kept on the device until a batch ends) against
   transformers' batched `generate` with no capture, same prompts, batch size, left padding
   and EOS; reported as examples/s, generated tokens/s and probeheat's time over plain
   generate (target <= 1.15x). Random weights rarely emit EOS, so both run to
   --max-new-tokens: the comparison is decode step for decode step.
2. Probes. A 33 x 15 grid of probes (n 4,000, d 4,096, planted signal, 80/20 split) on the
   device, against the CPU solver on the first --cpu-cells cells: seconds per cell and the
   ratio, with max |dAUC| on the cells both fitted.
3. Head grid. benchmarks/head_fit.py on the device: 32 x 32 layer x head probes at one
   position (n_train 2,000, head_dim 128, planted signal), the batched Newton against a
   per-cell loop of the same solver on the same device (target >= 10x, identical AUCs).
Peak GPU memory is printed for each part.

Without a GPU (or with --tiny) the same code runs on a tiny config on the CPU, in seconds
(tests/test_benchmarks.py runs it), so the script is known to work before a GPU is at hand.

    python benchmarks/gpu.py                 # on a GPU box
    python benchmarks/gpu.py --tiny          # anywhere
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

LLAMA_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336,
                num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                max_position_embeddings=8192, rope_theta=500000.0)
TINY = dict(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)


def tokenizer():
    """The built-in model's tokenizer (offline); its ids fit both vocabularies."""
    from transformers import AutoTokenizer

    from probeheat.models.builtin import provision

    folder, _ = provision("smollm2-135m-instruct")
    return AutoTokenizer.from_pretrained(folder)


def build(tiny: bool, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    from probeheat.models.load import LoadedModel

    tok = tokenizer()
    shape = TINY if tiny else LLAMA_8B
    config = LlamaConfig(**shape, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         bos_token_id=tok.bos_token_id)
    dtype = torch.float32 if tiny else torch.bfloat16
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    info = {"model_id": "llama-8b-shape (random)" if not tiny else "tiny llama (random)",
            "n_layers": config.num_hidden_layers, "hidden_size": config.hidden_size}
    return LoadedModel(model, tok, info)


def prompts(loaded, n: int) -> list[list[int]]:
    from probeheat.data import load_dataset
    from probeheat.models import build_prompt, encode_prompt

    questions = [e.question for e in load_dataset("world-facts", seed=0).examples]
    questions = (questions * (n // len(questions) + 1))[:n]
    return [encode_prompt(loaded.tokenizer, build_prompt(loaded.tokenizer, q))
            for q in questions]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gb() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else 0.0


def capture(loaded, ids: list[list[int]], batch: int, max_new: int) -> dict:
    """(seconds, tokens) of probeheat's capture and of plain generate, same batches."""
    from probeheat.run.capture import CaptureEngine, length_batches
    from probeheat.run.positions import BUILTIN_POSITIONS, prompt_lookback, resolve_positions

    names = list(BUILTIN_POSITIONS)
    engine = CaptureEngine(loaded, max_new_tokens=max_new, lookback=prompt_lookback(names))
    batches = length_batches([len(p) for p in ids], batch)
    out = {}
    for kind in ("plain", "probeheat", "plain "):  # plain twice: warm-up drift shows
        sync()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        start, tokens = time.perf_counter(), 0
        for rows in batches:
            part = [ids[r] for r in rows]
            if kind.strip() == "plain":
                tokens += plain_generate(loaded, engine, part, max_new)
            else:
                got = engine.generate(part)
                where = [resolve_positions(names, prompt_len=p, gen_len=g, span=None).index
                         for p, g in zip(got.prompt_lens, got.gen_lens, strict=True)]
                got.gather(where, names)
                tokens += got.n_tokens
        sync()
        out[kind] = {"seconds": time.perf_counter() - start, "tokens": tokens,
                     "peak_gb": peak_gb()}
    return out


@torch.inference_mode()
def plain_generate(loaded, engine, part, max_new: int) -> int:
    ids, mask, _ = engine._left_padded(part)
    gen = loaded.model.generate(ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new,
                                pad_token_id=engine.pad_id, eos_token_id=sorted(engine.eos_ids))
    new = gen[:, ids.shape[1]:].tolist()
    return sum(next((k + 1 for k, t in enumerate(r) if t in engine.eos_ids), len(r)) for r in new)


def probes(tiny: bool, device: str, cpu_cells: int) -> dict:
    """A layers x positions grid of probes on the device; the CPU solver on a few cells."""
    from probeheat.probe.cells import fit_cell_many
    from probeheat.probe.metrics import roc_auc
    from probeheat.probe.settings import ProbeSettings

    L, P, n, d = (3, 2, 400, 64) if tiny else (33, 15, 4000, 4096)
    rng = np.random.default_rng(0)
    y = (rng.random(n) < 0.4).astype(np.int64)
    direction = rng.standard_normal(d).astype(np.float32)
    direction /= np.linalg.norm(direction)
    tr, te = np.arange(int(0.8 * n)), np.arange(int(0.8 * n), n)
    times, aucs = {"device": [], "cpu": []}, {"device": [], "cpu": []}
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    for cell in range(L * P):
        X = rng.standard_normal((n, d)).astype(np.float32)
        X += (0.5 + 0.5 * (cell % P) / P) * (2 * y[:, None] - 1) * direction
        for where in ("device", "cpu"):
            if where == "cpu" and cell >= cpu_cells:
                continue
            settings = ProbeSettings(device=device if where == "device" else "cpu")
            sync()
            start = time.perf_counter()
            (_, scores), = fit_cell_many(X[tr], [y[tr]], X[te], settings)
            sync()
            times[where].append(time.perf_counter() - start)
            aucs[where].append(roc_auc(y[te], scores))
    both = min(len(aucs["cpu"]), len(aucs["device"]))
    return {"cells": L * P, "shape": [L, P, n, d], "seconds_per_cell": {
        k: float(np.median(v)) for k, v in times.items() if v},
        "device_total_s": float(sum(times["device"])),
        "max_abs_dauc": float(np.max(np.abs(np.subtract(aucs["cpu"][:both],
                                                         aucs["device"][:both])))),
        "peak_gb": peak_gb()}


def heads(tiny: bool, device: str) -> dict:
    """benchmarks/head_fit.py's comparison on the device (tiny: 4 x 4 cells, n 400, d 32)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from head_fit import compare

    shape = (4, 4, 400, 32) if tiny else (32, 32, 2000, 128)
    r = compare(*shape, device=device)
    return {"cells": r.cells, "shape": list(shape), "loop_s": r.loop_s,
            "batched_s": r.batched_s, "speedup": r.loop_s / r.batched_s,
            "max_abs_dauc": r.max_dauc}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny config on the CPU")
    parser.add_argument("--n", type=int, default=512, help="prompts (default 512; tiny: 16)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--cpu-cells", type=int, default=3,
                        help="cells the CPU solver also fits (default 3)")
    parser.add_argument("--skip-capture", action="store_true")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args(argv)
    tiny = args.tiny or not torch.cuda.is_available()
    device = "cpu" if tiny and not torch.cuda.is_available() else "cuda"
    n = min(args.n, 16) if tiny else args.n
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    print(f"device: {device} ({name}); torch {torch.__version__}; "
          f"{'TINY config' if tiny else 'Llama-8B shape, bf16'}; {n} prompts, batch "
          f"{args.batch_size}, {args.max_new_tokens} new tokens", flush=True)
    result: dict = {"device": name, "tiny": tiny}
    if not args.skip_capture:
        loaded = build(tiny, device)
        cap = capture(loaded, prompts(loaded, n), args.batch_size, args.max_new_tokens)
        plain_s = min(cap["plain"]["seconds"], cap["plain "]["seconds"])
        ours = cap["probeheat"]
        result["capture"] = {**cap, "ratio_vs_plain_generate": ours["seconds"] / plain_s}
        print(f"capture: probeheat {n / ours['seconds']:.2f} examples/s, "
              f"{ours['tokens'] / ours['seconds']:.0f} tok/s, peak {ours['peak_gb']:.1f} GB; "
              f"plain generate {n / plain_s:.2f} examples/s; probeheat / plain = "
              f"{ours['seconds'] / plain_s:.2f}x the time (target <= 1.15)", flush=True)
        del loaded
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    grid = probes(tiny, device, args.cpu_cells)
    result["probes"] = grid
    per = grid["seconds_per_cell"]
    print(f"probes: {grid['cells']} cells {grid['shape']}: device {per['device']:.3f} s/cell "
          f"({grid['device_total_s']:.1f} s in all), cpu {per.get('cpu', float('nan')):.3f} "
          f"s/cell on {min(args.cpu_cells, grid['cells'])} cells: "
          f"{per.get('cpu', float('nan')) / per['device']:.1f}x; max |dAUC| "
          f"{grid['max_abs_dauc']:.1e}; peak {grid['peak_gb']:.1f} GB", flush=True)
    result["heads"] = heads(tiny, device)
    h = result["heads"]
    print(f"heads: {h['cells']} cells: per-cell loop {h['loop_s']:.2f} s, batched "
          f"{h['batched_s']:.2f} s: {h['speedup']:.1f}x (target >= 10); max |dAUC| "
          f"{h['max_abs_dauc']:.1e}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
