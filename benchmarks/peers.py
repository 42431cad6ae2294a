"""Peers for run_throughput.py: the libraries researchers use instead to capture activations.

Each peer captures what probeheat's worker captures, on the same model folder, token ids
(the probeheat worker's chat-templated prompts), max new tokens, greedy decoding, float32,
threads and length-sorted batches, in its own process (peak RSS per peer):

- nnsight: one `model.generate(...)` trace per batch whose `tracer.all()` loop saves, at
  every forward, the embedding output and every decoder layer's output (layers 0..L, the
  raw residual stream) at the last 8 positions of the left-padded input: the last 8 prompt
  positions at the prefill, the one new token at each decode step. The generated ids are
  the argmax of each step's logits. HF `generate` never feeds the last token, so the EOS
  stop is held back one step (a stopping criterion ends a row once its EOS, or its
  max_new_tokens-th token, has been fed): position -1 exists, as in probeheat.
- TransformerLens (`TransformerBridge`, 4.x): HF `generate` on the bridge's model (the
  bridge sets eager attention), then per batch `run_with_cache` over the right-padded
  prompt + answer with a names filter keeping `blocks.k.hook_resid_pre` (k = 0..L-1) and
  `blocks.{L-1}.hook_resid_post` (layer L, before the final norm), every position; the
  15 positions are indexed from the cache.

The peers run under another Python (`--peer-python`, e.g. a venv with
`pip install -e .[bench]`) and are skipped, with the install command, where missing. A peer
that fails is reported with its last error line and the others go on. TransformerLens
4.3.0 needs transformers < 5.24: under 5.24 a bridge's KV-cached generation (HF generate on
`bridge.original_model`, and `bridge.generate`) emits garbage ("The-------" for "The capital
of France is Paris."), while uncached forwards still agree; `agreement()` shows such a
mismatch as 0 identical generations.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]
import run_throughput as rt  # noqa: E402  (the shared worker helpers)

PEERS = {"nnsight": ("nnsight", "pip install nnsight"),
         "tlens": ("transformer_lens", "pip install transformer-lens")}
WINDOW = 8  # prompt positions probeheat keeps (prompt_lookback of run_throughput.NAMES)


def versions(python: str, module: str) -> str | None:
    """'nnsight 0.8.1, transformers 5.24.0, torch 2.13.0+cpu' under `python`, or None."""
    code = (f"import importlib.util as u, importlib.metadata as m, sys\n"
            f"if u.find_spec({module!r}) is None: sys.exit(3)\n"
            f"print(', '.join(p + ' ' + m.version(p) for p in "
            f"[{module.replace('_', '-')!r}, 'transformers', 'torch']))")
    done = subprocess.run([python, "-c", code], capture_output=True, text=True)
    return done.stdout.strip() if done.returncode == 0 else None


def run_peers(best: dict, args, tmp: Path) -> None:
    """Each peer at each of --peer-batch-sizes, against probeheat's best run."""
    print(f"\npeers (python {args.peer_python}), threads={best['threads']}, against probeheat "
          f"batch={best['batch']}:", flush=True)
    extra = ["--model-dir", str(args.model_dir), "--prompts", str(tmp / "prompts.json")]
    (tmp / "prompts.json").write_text(json.dumps(best["prompts"]))
    for peer in args.peers:
        module, install = PEERS[peer]
        found = versions(args.peer_python, module)
        if found is None:
            print(f"{peer}: not installed ({install}, or pip install -e '.[bench]'; "
                  f"--peer-python picks the Python)")
            continue
        runs = [rt.launch(peer, best["threads"], b, args, tmp,
                          runner=(args.peer_python, __file__),
                          extra=extra, fatal=False)
                for b in args.peer_batch_sizes]
        ok = [r for r in runs if "error" not in r]
        for r in runs:
            if "error" in r:
                print(f"{peer} batch={r['batch']}: cannot run: {r['error']}")
        if ok:
            summary(peer, found, best, max(ok, key=lambda r: r["ex_s"]))


def summary(peer: str, found: str, ours: dict, theirs: dict) -> None:
    print(f"{peer} ({found}) best batch={theirs['batch']}: examples/s ratio (probeheat / "
          f"{peer}): {ours['ex_s'] / theirs['ex_s']:.2f}x (target > 1); peak RSS "
          f"{theirs['peak_rss_mb']:.0f} MB vs probeheat {ours['peak_rss_mb']:.0f} MB "
          f"({theirs['peak_rss_mb'] / ours['peak_rss_mb']:.2f}x); activations held "
          f"{theirs['held_mb']:.0f} MB vs {ours['held_mb']:.0f} MB")
    print(f"{peer} vs probeheat: {agreement(ours, theirs)}", flush=True)


def agreement(ours: dict, theirs: dict) -> str:
    """Identical generations and max |diff| over every layer 0..L at the positions both have."""
    same = [r for r, (a, b) in enumerate(zip(ours["generated"], theirs["generated"],
                                             strict=True)) if a == b]
    both = ours["mask"][same] & theirs["mask"][same]
    if not both.any():
        return f"identical generations {len(same)}/{len(ours['generated'])}; nothing to compare"
    diff = np.abs(ours["acts"][same] - theirs["acts"][same]).max(axis=(1, 3))[both]
    return (f"identical generations {len(same)}/{len(ours['generated'])}; max |diff| over "
            f"{int(both.sum())} positions x layers 0..{ours['acts'].shape[1] - 1}: "
            f"{diff.max():.2e} (largest |value| {np.abs(ours['acts'][same]).max():.1f}); "
            f"positions probeheat has and {theirs['kind']} lacks: "
            f"{int((ours['mask'] & ~theirs['mask']).sum())}")


# -- workers (run under --peer-python) -------------------------------------------------------

def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    prompts = json.loads(Path(args.prompts).read_text())
    load, run = {"nnsight": (load_nnsight, nnsight_run), "tlens": (load_tlens, tlens_run)}[
        args.worker]
    model = load(args.model_dir, prompts[0])
    loaded_rss = rt.rss_mb()
    start, cpu = time.perf_counter(), rt.cpu_seconds()
    gen, acts, mask = run(model, prompts, args)
    rt.save_result(args, time.perf_counter() - start, rt.cpu_seconds() - cpu, loaded_rss,
                   (gen, acts, mask))


def load_nnsight(folder: str, warm: list[int]):
    import torch
    from nnsight import TransformersModel

    model = TransformersModel(folder, task="text-generation", dtype=torch.float32,
                              dispatch=True)
    with torch.inference_mode(), model.trace([warm]):  # page in weights, warm kernels
        pass
    return model


def fed_stop(width: int, eos: list[int], limit: int):
    """Stop a row once its EOS (or its `limit`-th token) has been fed back in: one step
    after transformers' own EOS stop, so the last token's states are computed."""
    from transformers import StoppingCriteria

    class FedStop(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            import torch

            new = input_ids[:, width:]
            fed_eos = torch.isin(new[:, :-1], torch.tensor(eos)).any(-1)
            return fed_eos | (new.shape[1] > limit)

    return FedStop()


def nnsight_run(model, prompts, args):
    import torch
    from transformers import StoppingCriteriaList

    from probeheat.run.capture import _eos_ids, length_batches

    eos = sorted(_eos_ids(model, model.tokenizer))  # eos_token_id=[] below: fed_stop decides
    n, width_l = len(prompts), len(model.model.layers) + 1
    acts = np.zeros((n, width_l, len(rt.NAMES), model.config.hidden_size), np.float32)
    mask = np.zeros((n, len(rt.NAMES)), bool)
    gen: list = [None] * n
    for rows in length_batches([len(p) for p in prompts], args.batch_size):
        batch = [prompts[r] for r in rows]
        width = max(map(len, batch))
        with torch.inference_mode(), model.generate(
                batch, eos_token_id=[], max_new_tokens=args.max_new_tokens + 1,
                do_sample=False, pad_token_id=model.tokenizer.pad_token_id,
                stopping_criteria=StoppingCriteriaList([fed_stop(width, eos, args.max_new_tokens)])
        ) as tracer:
            steps, tokens = list().save(), list().save()
            for _ in tracer.all():
                hidden = [model.model.embed_tokens.output] + [x.output for x in model.model.layers]
                steps.append(torch.stack([h[:, -WINDOW:] for h in hidden]))
                tokens.append(model.lm_head.output[:, -1].argmax(-1))
        rt.HELD.append(sum(s.numel() * s.element_size() for s in steps))
        nnsight_gather(steps, torch.stack(tokens, 1).tolist(), (rows, prompts, eos, args),
                       (gen, acts, mask))
    return gen, acts, mask


def nnsight_gather(steps, tokens, where, into) -> None:
    """Cut each row's answer at its first EOS and copy its 15 positions out of the steps."""
    rows, prompts, eos, args = where
    gen, acts, mask = into
    for b, r in enumerate(rows):
        row = tokens[b][:args.max_new_tokens]
        stop = next((k for k, t in enumerate(row) if t in eos), None)
        gen[r] = row if stop is None else row[:stop + 1]
        plen = len(prompts[r])
        for p, name in enumerate(rt.NAMES):
            i = rt.indices(plen, len(gen[r])).get(name)
            if i is None or (i < plen - WINDOW):
                continue  # probeheat does not keep it either
            if i >= plen:
                acts[r, :, p] = steps[i - plen + 1][:, b, -1].numpy()
            else:
                acts[r, :, p] = steps[0][:, b, WINDOW - (plen - i)].numpy()
            mask[r, p] = True


def load_tlens(folder: str, warm: list[int]):
    import torch
    from transformer_lens.model_bridge import TransformerBridge

    bridge = TransformerBridge.boot_transformers(folder, device="cpu", dtype=torch.float32)
    with torch.inference_mode():
        bridge(torch.tensor([warm]))
    return bridge


def tlens_run(bridge, prompts, args):
    import torch

    from probeheat.run.capture import _eos_ids, length_batches

    hf, L = bridge.original_model, bridge.cfg.n_layers
    pad, eos = bridge.tokenizer.pad_token_id, sorted(_eos_ids(hf, bridge.tokenizer))
    names = [f"blocks.{k}.hook_resid_pre" for k in range(L)] + [f"blocks.{L - 1}.hook_resid_post"]
    keep = set(names)
    acts = np.zeros((len(prompts), L + 1, len(rt.NAMES), bridge.cfg.d_model), np.float32)
    mask = np.zeros((len(prompts), len(rt.NAMES)), bool)
    gen: list = [None] * len(prompts)
    for rows in length_batches([len(p) for p in prompts], args.batch_size):
        answers = hf_generate(hf, [prompts[r] for r in rows], (pad, eos), args.max_new_tokens)
        seqs = [prompts[r] + a for r, a in zip(rows, answers, strict=True)]
        tokens = torch.full((len(seqs), max(map(len, seqs))), pad, dtype=torch.long)
        for b, s in enumerate(seqs):  # right padding: causal rows never see their pads
            tokens[b, :len(s)] = torch.tensor(s)
        with torch.inference_mode():
            _, cache = bridge.run_with_cache(tokens, names_filter=lambda n: n in keep,
                                             return_type=None)
        stacked = torch.stack([cache[n] for n in names])  # [L+1, B, T, d]
        rt.HELD.append(stacked.numel() * stacked.element_size())
        for b, r in enumerate(rows):
            gen[r] = answers[b]
            for p, name in enumerate(rt.NAMES):
                i = rt.indices(len(prompts[r]), len(answers[b])).get(name)
                if i is not None:
                    acts[r, :, p], mask[r, p] = stacked[:, b, i].numpy(), True
    return gen, acts, mask


def hf_generate(model, prompts, ids, max_new_tokens) -> list[list[int]]:
    """transformers' batched greedy generate, left-padded, answers cut after EOS."""
    import torch

    pad, eos = ids
    width = max(map(len, prompts))
    x = torch.full((len(prompts), width), pad, dtype=torch.long)
    m = torch.zeros_like(x)
    for b, p in enumerate(prompts):
        x[b, width - len(p):], m[b, width - len(p):] = torch.tensor(p), 1
    with torch.inference_mode():
        out = model.generate(x, attention_mask=m, do_sample=False, max_new_tokens=max_new_tokens,
                             pad_token_id=pad, eos_token_id=eos)
    answers = []
    for row in out[:, width:].tolist():
        stop = next((k for k, t in enumerate(row) if t in eos), None)
        answers.append(row if stop is None else row[:stop + 1])
    return answers


def main() -> None:
    parser = argparse.ArgumentParser(description="a peer worker of run_throughput.py")
    parser.add_argument("--worker", choices=sorted(PEERS), required=True)
    for flag in ("--threads", "--batch-size", "--max-new-tokens"):
        parser.add_argument(flag, type=int, required=True)
    for flag in ("--model-dir", "--prompts", "--out"):
        parser.add_argument(flag, required=True)
    args, _ = parser.parse_known_args()  # the rest is run_throughput's (--mode, --samples)
    worker(args)


if __name__ == "__main__":
    main()
