"""Run throughput: probeheat's batched capture vs the study's batch-size-1 pipeline.

Baseline (the study's approach): for each question, `model.generate()` at batch size 1,
then a batch-size-1 re-forward of prompt + answer with `output_hidden_states=True`,
keeping every position of every layer on CPU until the end, then gathering positions.
probeheat: `CaptureEngine` (mode "generate"): length-sorted batches, one greedy KV-cache
decode that keeps only the last `lookback` prompt positions and each new token's state.

Both run on the same model, questions, positions and CPU, each in its own subprocess so
peak RSS (ru_maxrss) is per approach. Times exclude model loading. Prints every
configuration, the examples/s and peak-memory ratios of the best configurations, and the
max |difference| of the captured values (layers 0..L-1; transformers' last hidden state
is post-norm, probeheat's layer L is not, so layer L is reported separately).

On the 2-core development machine (shared, load average ~3), 1 torch thread was fastest for
both approaches (2 threads were 2-5x slower under load) and batch 32 was best for probeheat:
~5.9x examples/s, 32/32 identical generations, max |diff| 4e-4 on values up to ~720.

Then the peers researchers use instead, nnsight and TransformerLens (benchmarks/peers.py,
under --peer-python; skipped with the install command when missing), at --peer-batch-sizes.

    python benchmarks/run_throughput.py                       # 32 world-facts questions
    python benchmarks/run_throughput.py --n 16 --batch-sizes 16 --threads 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HELD: list[int] = []  # bytes of captured activations held at once (per batch for probeheat)
NAMES = ["last_q", "first_answer", "second_answer", *(str(-k) for k in range(8, 0, -1))]


def questions(n: int) -> list[str]:
    try:
        from probeheat.data import load_dataset
    except ImportError:
        load_dataset = None
    if load_dataset is not None:
        return [ex.question for ex in load_dataset("world-facts", limit=n, seed=0).examples]
    countries = ["France", "Japan", "Kenya", "Peru", "Canada", "Egypt", "Norway", "Chile"]
    return [f"What is the capital of {countries[i % len(countries)]}?" for i in range(n)]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def worker(args) -> None:
    import torch

    from probeheat.models import build_prompt, encode_prompt, load_model

    torch.set_num_threads(args.threads)
    loaded = load_model(args.model, device="cpu")
    tok = loaded.tokenizer
    prompts = [encode_prompt(tok, build_prompt(tok, q)) for q in questions(args.n)]
    with torch.inference_mode():  # page in the mmapped weights, warm up kernels
        loaded.model(torch.tensor([prompts[0]]))
    loaded_rss = rss_mb()
    start, cpu = time.perf_counter(), cpu_seconds()
    run = {"baseline": baseline, "probeheat": probeheat, "plain": plain,
           "sampled": sampled}[args.worker]
    result = run(loaded, prompts, args)
    save_result(args, time.perf_counter() - start, cpu_seconds() - cpu, loaded_rss, result,
                prompts)


def save_result(args, seconds: float, cpu: float, loaded_rss: float, result, prompts=None):
    """A worker's timing, peak RSS, answers and (gen, acts, mask) into args.out(.json/.npz)."""
    gen, acts, mask = result
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    np.savez(args.out, acts=acts, mask=mask)
    Path(args.out + ".json").write_text(json.dumps({
        "seconds": seconds, "cpu_seconds": cpu, "peak_rss_mb": peak, "loaded_rss_mb": loaded_rss,
        "held_mb": max(HELD, default=0) / 2**20, "answers": len(gen),
        "generated": gen, "n_tokens": sum(len(g) for g in gen), "prompts": prompts}))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def indices(prompt_len: int, gen_len: int) -> dict[str, int]:
    from probeheat.run.positions import resolve_positions

    return resolve_positions(NAMES, prompt_len=prompt_len, gen_len=gen_len, span=None).index


def baseline(loaded, prompts, args):
    import torch

    model, states, gen = loaded.model, [], []
    with torch.inference_mode():
        for ids in prompts:
            x = torch.tensor([ids])
            out = model.generate(x, attention_mask=torch.ones_like(x), do_sample=False,
                                 max_new_tokens=args.max_new_tokens,
                                 pad_token_id=loaded.tokenizer.pad_token_id)
            gen.append(out[0, len(ids):].tolist())
            hidden = model(out, output_hidden_states=True).hidden_states
            states.append(torch.stack(hidden)[:, 0].clone())  # [L+1, T, d]: everything
    HELD.append(sum(s.numel() * s.element_size() for s in states))
    acts = np.zeros((len(prompts), states[0].shape[0], len(NAMES), states[0].shape[-1]),
                    np.float32)
    mask = np.zeros((len(prompts), len(NAMES)), bool)
    for r, (ids, g) in enumerate(zip(prompts, gen, strict=True)):
        for p, name in enumerate(NAMES):
            i = indices(len(ids), len(g)).get(name)
            if i is not None:
                acts[r, :, p], mask[r, p] = states[r][:, i].numpy(), True
    return gen, acts, mask


def probeheat(loaded, prompts, args):
    from probeheat.run.capture import CaptureEngine, length_batches
    from probeheat.run.positions import prompt_lookback

    engine = CaptureEngine(loaded, max_new_tokens=args.max_new_tokens, mode=args.mode,
                           lookback=prompt_lookback(NAMES))
    n_layers = engine.n_layers + 1
    acts = np.zeros((len(prompts), n_layers, len(NAMES), loaded.info["hidden_size"]),
                    np.float32)
    mask = np.zeros((len(prompts), len(NAMES)), bool)
    gen: list = [None] * len(prompts)
    for rows in length_batches([len(p) for p in prompts], args.batch_size):
        batch = engine.generate([prompts[r] for r in rows])
        HELD.append(sum(t.numel() * t.element_size() for t in batch.prompt_buffer.values())
                    + sum(t.numel() * t.element_size()
                          for steps in batch.step_buffer.values() for t in steps))
        where = [indices(p, g) for p, g in zip(batch.prompt_lens, batch.gen_lens, strict=True)]
        got, got_mask = batch.gather(where, NAMES)
        acts[rows], mask[rows] = got["resid"], got_mask
        for r, g in zip(rows, batch.generated_ids, strict=True):
            gen[r] = g
    return gen, acts, mask


def plain(loaded, prompts, args):
    """transformers' batched greedy `generate`, same batches, padding and stop rule (EOS),
    no capture: the limit capture is measured against."""
    import torch

    from probeheat.run.capture import CaptureEngine, length_batches

    engine = CaptureEngine(loaded, max_new_tokens=args.max_new_tokens)  # for pad/EOS ids only
    gen: list = [None] * len(prompts)
    with torch.inference_mode():
        for rows in length_batches([len(p) for p in prompts], args.batch_size):
            ids, mask, _ = engine._left_padded([prompts[r] for r in rows])
            out = loaded.model.generate(ids, attention_mask=mask, do_sample=False,
                                        max_new_tokens=args.max_new_tokens,
                                        pad_token_id=engine.pad_id,
                                        eos_token_id=sorted(engine.eos_ids))
            for r, row in zip(rows, out[:, ids.shape[1]:].tolist(), strict=True):
                stop = next((k for k, t in enumerate(row) if t in engine.eos_ids), None)
                gen[r] = row if stop is None else row[:stop + 1]
    return gen, np.zeros((1,), np.float32), np.zeros((1,), bool)


def sampled(loaded, prompts, args):
    """probeheat's K sampled answers per question (shared prefill), no capture."""
    from probeheat.run.capture import CaptureEngine, length_batches
    from probeheat.run.sampling import Sampling, generators, sample_answers

    engine = CaptureEngine(loaded, max_new_tokens=args.max_new_tokens, mode="reforward")
    gen = []
    for rows in length_batches([len(p) for p in prompts], args.batch_size):
        batch = sample_answers(engine, [prompts[r] for r in rows],
                               generators(0, [str(r) for r in rows], args.samples),
                               Sampling(args.samples))
        gen += batch.generated_ids
    return gen, np.zeros((1,), np.float32), np.zeros((1,), bool)


def launch(kind: str, threads: int, batch_size: int, args, tmp: Path, *,
           runner: tuple = (sys.executable, __file__), extra: tuple | list = (),
           fatal: bool = True) -> dict:
    """One worker (runner: python, script) in its own process; fatal=False returns
    {"error": its last line} on failure."""
    out = str(tmp / f"{kind}-t{threads}-b{batch_size}")
    cmd = [*runner, "--worker", kind, "--threads", str(threads),
           "--batch-size", str(batch_size), "--n", str(args.n), "--model", args.model,
           "--max-new-tokens", str(args.max_new_tokens), "--mode", args.mode, "--out", out,
           "--samples", str(args.samples), *extra]
    done = subprocess.run(cmd, stderr=subprocess.PIPE, text=True)
    if done.returncode and not fatal:
        lines = [x for x in done.stderr.splitlines() if x.strip()] or ["(no message)"]
        return {"kind": kind, "batch": batch_size, "error": lines[-1].strip()}
    if done.returncode:
        sys.exit(f"{kind} worker failed:\n{done.stderr[-3000:]}")
    result = json.loads(Path(out + ".json").read_text())
    data = np.load(out + ".npz")
    result.update(kind=kind, threads=threads, batch=batch_size, acts=data["acts"],
                  mask=data["mask"], ex_s=result["answers"] / result["seconds"])
    print(f"{kind:9} threads={threads} batch={batch_size:3}  {result['seconds']:7.1f} s  "
          f"{result['ex_s']:6.2f} answers/s  {result['n_tokens'] / result['seconds']:6.1f} tok/s"
          f"  CPU {result['cpu_seconds'] / result['answers']:5.2f} s/answer  "
          f"peak RSS {result['peak_rss_mb']:6.0f} MB (model loaded: "
          f"{result['loaded_rss_mb']:.0f} MB)  activations held {result['held_mb']:5.0f} MB  "
          f"load avg {os.getloadavg()[0]:.1f}", flush=True)
    return result


def compare(base: dict, ours: dict) -> str:
    same = [r for r, (a, b) in enumerate(zip(base["generated"], ours["generated"], strict=True))
            if a == b]
    both = base["mask"][same] & ours["mask"][same]
    last = base["acts"].shape[1] - 1
    diff = np.abs(base["acts"][same][:, :last] - ours["acts"][same][:, :last])
    diff_last = np.abs(base["acts"][same][:, last] - ours["acts"][same][:, last])
    scale = np.abs(base["acts"][same][:, :last]).max()
    return (f"identical generations: {len(same)}/{len(base['generated'])}; max |diff| over "
            f"{int(both.sum())} captured positions, layers 0..{last - 1}: "
            f"{diff.max(axis=(1, 3))[both].max():.2e} (largest |value| {scale:.1f}; layer {last}: "
            f"{diff_last.max(axis=-1)[both].max():.2f}, post-norm vs raw by definition)")


def limits(best: dict, args, tmp: Path) -> None:
    """At probeheat's best configuration: plain `generate` (no capture) and K samples."""
    t, b = best["threads"], best["batch"]
    again = launch("probeheat", t, b, args, tmp)  # beside the others, for drift
    plain_run = launch("plain", t, b, args, tmp)
    sample_run = launch("sampled", t, b, args, tmp)
    same = sum(a == g for a, g in zip(again["generated"], plain_run["generated"], strict=True))
    cpu = lambda r: r["cpu_seconds"] / r["answers"]  # noqa: E731  (robust to other load)
    print(f"\nprobeheat (capture at every layer) / plain transformers generate (no capture), "
          f"threads={t} batch={b}: {again['seconds'] / plain_run['seconds']:.2f}x the time, "
          f"{cpu(again) / cpu(plain_run):.2f}x the CPU seconds (target <= 1.0 on CPU); "
          f"identical generations {same}/{args.n}")
    print(f"sampled answers/s with K={args.samples} (shared prefill) / greedy examples/s, same "
          f"batch of questions: {sample_run['ex_s'] / again['ex_s']:.2f}x; per CPU second: "
          f"{cpu(again) / cpu(sample_run):.2f}x (target >= 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--mode", default="generate", choices=["generate", "reforward"])
    parser.add_argument("--samples", type=int, default=10,
                        help="K for the sampled-answers comparison (default: %(default)s)")
    parser.add_argument("--no-plain", action="store_true",
                        help="skip the plain-generate and sampled comparisons")
    parser.add_argument("--peers", nargs="*", default=["nnsight", "tlens"],
                        choices=["nnsight", "tlens"],
                        help="peer libraries to measure (none: --peers with no names)")
    parser.add_argument("--peer-batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--peer-python", default=sys.executable,
                        help="the Python the peers are installed in (default: this one)")
    parser.add_argument("--worker", choices=["baseline", "probeheat", "plain", "sampled"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.threads = args.threads[0]
        return worker(args)
    args.model_dir = args.model
    if args.model == "smollm2-135m-instruct":
        from probeheat.models.builtin import provision

        args.model_dir = provision(args.model)[0]  # convert once, outside the timed workers
    print(f"{args.n} questions, max_new_tokens={args.max_new_tokens}, {os.cpu_count()} CPUs, "
          f"model {args.model}, probeheat mode {args.mode}")
    with tempfile.TemporaryDirectory() as tmp:
        bases = [launch("baseline", t, 1, args, Path(tmp)) for t in args.threads]
        ours = [launch("probeheat", t, b, args, Path(tmp))
                for t in args.threads for b in args.batch_sizes]
        base, best = max(bases, key=lambda r: r["ex_s"]), max(ours, key=lambda r: r["ex_s"])
        if not args.no_plain:
            limits(best, args, Path(tmp))
        if args.peers:
            import peers  # benchmarks/peers.py, beside this script

            peers.run_peers(best, args, Path(tmp))
    print(f"\nbest baseline: threads={base['threads']}; best probeheat: threads="
          f"{best['threads']} batch={best['batch']}")
    print(f"examples/s ratio (probeheat / baseline): {best['ex_s'] / base['ex_s']:.2f}x "
          f"(CPU seconds per example: {base['cpu_seconds'] / best['cpu_seconds']:.2f}x fewer)")
    print(f"peak RSS ratio (baseline / probeheat): "
          f"{base['peak_rss_mb'] / best['peak_rss_mb']:.2f}x; above the loaded model: "
          f"{base['peak_rss_mb'] - base['loaded_rss_mb']:.0f} MB vs "
          f"{best['peak_rss_mb'] - best['loaded_rss_mb']:.0f} MB")
    print(f"activations held at once (baseline / probeheat): {base['held_mb']:.0f} MB / "
          f"{best['held_mb']:.0f} MB = {base['held_mb'] / best['held_mb']:.2f}x; the baseline's "
          f"grows with every example, probeheat's is per batch")
    print(compare(base, best))


if __name__ == "__main__":
    main()
