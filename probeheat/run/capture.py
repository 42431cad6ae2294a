"""Batched greedy generation with activation capture at every layer.

What "layer k" means (site "resid"): layer 0 is the embedding output (the input of decoder
layer 0, position embeddings included for GPT-2-style models); layer k >= 1 is the output
of decoder layer k-1, i.e. the raw residual stream. For k < L this equals
``output_hidden_states[k]``; for k = L it does NOT: transformers' last hidden state is
taken after the final norm, ours before it. Sites "mlp" and "attn" are the outputs of
decoder layer k-1's MLP / self-attention module (before the residual add), k = 1..L.
Site "head" (k = 1..L) is the INPUT of decoder layer k-1's attention output projection
(``self_attn.o_proj`` in llama-style models, ``attn.c_proj`` in GPT-2, ``attention.dense``
in GPT-NeoX, ``out_proj`` in OPT-style ones), taken by a forward pre-hook: the per-head
attention outputs concatenated head by head, width n_heads * head_dim, head h in columns
h * head_dim .. (h + 1) * head_dim - 1 (see :func:`head_info`).

Memory. Mode "generate" captures during generation: the prefill keeps only the last
``lookback`` prompt positions of each row and every decode step keeps the one new token's
state per layer, on the model's device until the batch is gathered (one copy to the host
per batch, so a GPU never waits for the host at each token). After the last stop, one extra decode step feeds
the final tokens so their states (e.g. EOS at position -1) exist. Mode "reforward" skips
capture while generating and, when positions are known, runs one batched forward over
prompt + generated ids whose hooks keep only the requested positions.

Padding. Prompts are left-padded for generation and sequences right-padded for the
re-forward; position ids are always ``cumsum(mask) - 1``, so each row sees exactly the
positions it would see alone (needed by absolute-position models such as GPT-2).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from probeheat.errors import UserError

from .config import CAPTURE_MODES as MODES
from .config import check_sites

StepCallback = Callable[[int, int], None]  # (rows finished at this step, tokens generated)

_LAYER_PATHS = ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers",
                "transformer.layers", "model.language_model.layers", "language_model.model.layers")
_ATTN_NAMES = ("self_attn", "attn", "self_attention", "attention")
_MLP_NAMES = ("mlp", "feed_forward", "ffn")
# the attention output projection, whose input is the concatenated per-head outputs
_PROJ_NAMES = ("o_proj", "c_proj", "out_proj", "dense")


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The model's list of decoder layers (UserError for architectures we cannot find it in)."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    n = getattr(config, "num_hidden_layers", None)
    for path in _LAYER_PATHS:
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.ModuleList) and (n is None or len(obj) == n):
            return obj
    candidates = [m for _, m in model.named_modules()
                  if isinstance(m, torch.nn.ModuleList) and len(m) == n]
    if len(candidates) == 1:
        return candidates[0]
    raise UserError(type(model).__name__, "cannot find the list of decoder layers in this "
                    "architecture", "use a llama-, GPT-2- or NeoX-style causal LM")


def site_layers(site: str, n_layers: int) -> list[int]:
    """Layer numbers a site has: resid 0..L, mlp/attn/head 1..L."""
    return list(range(n_layers + 1)) if site == "resid" else list(range(1, n_layers + 1))


def _submodule(layer: torch.nn.Module, site: str) -> torch.nn.Module:
    for name in _ATTN_NAMES if site == "attn" else _MLP_NAMES:
        module = getattr(layer, name, None)
        if isinstance(module, torch.nn.Module):
            return module
    raise UserError(f"--sites {site}", f"{type(layer).__name__} has no {site} module we know",
                    "capture the resid site only")


def _projection(layer: torch.nn.Module) -> tuple[str, torch.nn.Module] | None:
    """(path inside the layer, module) of a decoder layer's attention output projection."""
    for attn_name in _ATTN_NAMES:
        attn = getattr(layer, attn_name, None)
        if not isinstance(attn, torch.nn.Module):
            continue
        for name in _PROJ_NAMES:
            module = getattr(attn, name, None)
            if isinstance(module, torch.nn.Module) and hasattr(module, "weight"):
                return f"{attn_name}.{name}", module
    return None


def head_projections(model: Any, layers: torch.nn.ModuleList | None = None
                     ) -> tuple[str, list[torch.nn.Module]]:
    """The attention output projection of every decoder layer (site "head"); a one-line
    UserError naming the model class and what was looked for when a layer has none."""
    layers = decoder_layers(model) if layers is None else layers
    found = [_projection(layer) for layer in layers]
    if any(f is None for f in found) or len({f[0] for f in found}) != 1:
        looked = "/".join(_ATTN_NAMES) + " . " + "/".join(_PROJ_NAMES)
        raise UserError("--sites head", f"{type(model).__name__}: cannot find the attention "
                        f"output projection in its decoder layers (looked for {looked})",
                        "capture resid, mlp or attn only")
    return found[0][0], [f[1] for f in found]


def _in_width(module: torch.nn.Module) -> int:
    """Input width of a projection: nn.Linear's in_features, GPT-2 Conv1D's weight rows."""
    if isinstance(module, torch.nn.Linear):
        return int(module.in_features)
    return int(module.weight.shape[0])  # transformers' Conv1D stores weight as [in, out]


def head_info(model: Any) -> dict:
    """What site "head" stores for this model: n_heads, head_dim and the module hooked."""
    path, modules = head_projections(model)
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") \
        else model.config
    n_heads = int(getattr(config, "num_attention_heads", 0) or 0)
    width = _in_width(modules[0])
    head_dim = getattr(config, "head_dim", None) or (width // n_heads if n_heads else 0)
    if not n_heads or n_heads * int(head_dim) != width:
        raise UserError("--sites head", f"{type(model).__name__}: {path} takes {width} "
                        f"inputs, not num_attention_heads ({n_heads}) x head_dim "
                        f"({head_dim})", "capture resid, mlp or attn only")
    return {"n_heads": n_heads, "head_dim": int(head_dim), "module": path,
            "what": f"input of each decoder layer's {path} (forward pre-hook): the "
                    "attention heads' outputs concatenated, head h in columns "
                    "h*head_dim..(h+1)*head_dim-1"}


def _as_tensor(output: Any) -> torch.Tensor:
    # Decoder layers return a Tensor in recent transformers and a tuple in older ones;
    # output[0] on a Tensor would silently be batch row 0.
    return output if isinstance(output, torch.Tensor) else output[0]


@dataclass
class GeneratedBatch:
    """Greedy answers for one batch of prompts, plus what is needed to gather activations."""

    prompt_ids: list[list[int]]
    generated_ids: list[list[int]]
    stop_reasons: list[str]  # "eos" | "newline" | "max_new_tokens"
    token_logprobs: list[list[float]]  # log p of each generated token (greedy choice)
    engine: CaptureEngine = field(repr=False)
    capture: str | None = None  # how gather() gets the states; None: the engine's mode
    # mode "generate": site -> [n_layers_site, B, W, d] (last W prompt positions of the
    # left-padded batch); site -> per decode step [n_layers_site, len(step_rows[j]), d],
    # the states of generated token j of the rows step_rows[j] (rows leave once stopped)
    prompt_buffer: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    step_buffer: dict[str, list[torch.Tensor]] = field(default_factory=dict, repr=False)
    step_rows: list[list[int]] = field(default_factory=list, repr=False)

    @property
    def prompt_lens(self) -> list[int]:
        return [len(p) for p in self.prompt_ids]

    @property
    def gen_lens(self) -> list[int]:
        return [len(g) for g in self.generated_ids]

    @property
    def n_tokens(self) -> int:
        return sum(self.gen_lens)

    @property
    def sequences(self) -> list[list[int]]:
        return [p + g for p, g in zip(self.prompt_ids, self.generated_ids, strict=True)]

    def gather(self, indices: Sequence[dict[str, int]], names: Sequence[str],
               sites: Sequence[str] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Activations at named positions: ({site: [B, n_layers_site, P, d]}, mask [B, P]).

        indices[b][name] is an absolute index into row b's unpadded prompt + generated ids;
        a name absent from a row's dict is missing there: zeros, mask False. ``sites``
        (default: the engine's) are the sites to return.
        """
        if len(indices) != len(self.prompt_ids):
            raise ValueError(f"gather: {len(indices)} index dicts for {len(self.prompt_ids)} rows")
        idx, mask = self._index_matrix(indices, names)
        sites = tuple(sites or self.engine.sites)
        if (self.capture or self.engine.mode) == "reforward":
            acts = self.engine._reforward(self.sequences, idx, mask, sites)
        else:
            acts = {site: self._gather_buffers(site, idx, mask) for site in sites}
        return {site: _to_numpy(t) for site, t in acts.items()}, mask.numpy()

    def _index_matrix(self, indices, names) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.zeros(len(indices), len(names), dtype=torch.long)
        mask = torch.zeros(len(indices), len(names), dtype=torch.bool)
        for b, row in enumerate(indices):
            length = len(self.prompt_ids[b]) + len(self.generated_ids[b])
            for p, name in enumerate(names):
                if name not in row:
                    continue
                i = int(row[name])
                if not 0 <= i < length:
                    raise ValueError(f"gather: row {b} position {name}={i} is outside its "
                                     f"sequence of {length} tokens")
                idx[b, p], mask[b, p] = i, True
        return idx, mask

    def _gather_buffers(self, site: str, idx: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        prompt_buf, steps = self.prompt_buffer[site], self.step_buffer[site]
        slot = [{b: k for k, b in enumerate(rows)} for rows in self.step_rows]
        n_l, _, window, d = prompt_buf.shape
        out = torch.zeros(len(idx), n_l, idx.shape[1], d, dtype=prompt_buf.dtype,
                          device=prompt_buf.device)
        for b, p in mask.nonzero().tolist():
            i, plen = int(idx[b, p]), len(self.prompt_ids[b])
            if i >= plen:
                out[b, :, p] = steps[i - plen][:, slot[i - plen][b]]
            elif i >= plen - window:
                out[b, :, p] = prompt_buf[:, b, window - plen + i]
            else:
                raise ValueError(f"gather: row {b} prompt index {i} is before the captured "
                                 f"window of the last {window} prompt tokens; pass "
                                 "lookback=positions.prompt_lookback(names) to the engine")
        return out


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    t = t.cpu()  # one copy per batch and site
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


class CaptureEngine:
    """Greedy batched decoding with a KV cache and per-layer activation capture."""

    def __init__(self, loaded: Any, sites: Sequence[str] = ("resid",), mode: str = "generate",
                 max_new_tokens: int = 64, stop_on_newline: bool = False, lookback: int = 8):
        check_sites(list(sites))
        if mode not in MODES:
            raise UserError("--capture", f"unknown mode {mode!r}", "use generate or reforward")
        if max_new_tokens < 1:
            raise UserError("--max-new-tokens", "must be at least 1", "pass e.g. 64")
        if lookback < 0:
            raise ValueError("lookback must be >= 0")
        self.loaded, self.model, self.tokenizer = loaded, loaded.model, loaded.tokenizer
        self.sites = tuple(dict.fromkeys(sites))
        self.mode, self.max_new_tokens = mode, max_new_tokens
        self.stop_on_newline, self.lookback = stop_on_newline, lookback
        self.layers = decoder_layers(self.model)
        self.n_layers = len(self.layers)
        self.capture_dtype = next(self.model.parameters()).dtype
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id
        self._newline: dict[int, bool] = {}
        params = inspect.signature(self.model.forward).parameters
        self._keep_kw = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        # transformers >= 5.24 names the KV cache `cache` (argument and output) and warns
        # about `past_key_values`, which older releases use.
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        hidden = int(self.model.config.get_text_config().hidden_size)
        self.widths = {site: hidden for site in self.sites}
        for site in self.sites:  # fail now, not mid-run
            if site == "head":
                self.widths[site] = _in_width(head_projections(self.model, self.layers)[1][0])
            elif site != "resid":
                _submodule(self.layers[0], site)

    def layers_of(self, site: str) -> list[int]:
        return site_layers(site, self.n_layers)

    # -- generation ---------------------------------------------------------------------

    def generate(self, prompt_ids: Sequence[Sequence[int]],
                 on_progress: StepCallback | None = None) -> GeneratedBatch:
        """Greedy-decode a batch; in mode "generate" also capture the activations.

        ``on_progress(rows_finished, tokens)`` is called after every decode step.
        """
        prompts = [list(map(int, p)) for p in prompt_ids]
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("generate: every prompt needs at least one token")
        rec = _StreamRecorder(self) if self.mode == "generate" else None
        gen, reasons, logps = self._decode(prompts, self.max_new_tokens, self.stop_on_newline,
                                           rec, on_progress)
        batch = GeneratedBatch(prompts, gen, reasons, logps, engine=self)
        if rec is not None:
            batch.prompt_buffer, batch.step_buffer = rec.prompt, rec.steps
            batch.step_rows = rec.step_rows
        return batch

    def replay(self, prompt_ids: Sequence[Sequence[int]], answers: Sequence[dict]
               ) -> GeneratedBatch:
        """A batch of answers generated before (``generated_ids``, ``stop_reason`` and
        ``token_logprobs`` of each), captured by one re-forward when gathered: the same
        answers under another exact-answer policy or other positions, without generating."""
        if self.mode != "reforward":
            raise ValueError("replay needs an engine in mode 'reforward'")
        return GeneratedBatch([list(map(int, p)) for p in prompt_ids],
                              [list(map(int, a["generated_ids"])) for a in answers],
                              [a["stop_reason"] for a in answers],
                              [list(a.get("token_logprobs") or []) for a in answers],
                              engine=self)

    def generate_text(self, prompts: Sequence[str], max_new_tokens: int | None = None, *,
                      stop_on_newline: bool | None = None, batch_size: int = 16) -> list[str]:
        """Plain greedy answers (no capture), e.g. for a model-based answer extractor."""
        from probeheat.models.prompts import encode_prompt

        ids = [encode_prompt(self.tokenizer, p) for p in prompts]
        limit = max_new_tokens or self.max_new_tokens
        newline = self.stop_on_newline if stop_on_newline is None else stop_on_newline
        texts: list[str] = [""] * len(ids)
        for rows in length_batches([len(x) for x in ids], batch_size):
            gen, _, _ = self._decode([ids[r] for r in rows], limit, newline, None)
            for r, g in zip(rows, gen, strict=True):
                texts[r] = self.tokenizer.decode(g, skip_special_tokens=True)
        return texts

    @torch.inference_mode()
    def next_token_logprobs(self, prompt_ids: Sequence[Sequence[int]],
                            token_ids: Sequence[int]) -> np.ndarray:
        """log p(token | prompt) at the end of each prompt, for the given tokens: [B, len(ids)].

        One forward per prompt, no generation, no capture; left padding with position ids
        cumsum(mask) - 1, so a prompt scores the same in any batch (float32).
        """
        prompts = [list(map(int, p)) for p in prompt_ids]
        shared = common_prefix(prompts)
        if shared < 8:  # nothing worth sharing: one padded forward
            ids, mask, positions = self._left_padded(prompts)
            out = self._forward(ids, mask, positions, None)
        else:
            out = self._forward_after_prefix(prompts, shared)
        logprobs = torch.log_softmax(out.logits[:, -1, :].float(), -1)
        return logprobs[:, list(token_ids)].cpu().numpy()

    def _forward_after_prefix(self, prompts: list[list[int]], shared: int):
        """One forward over a batch whose prompts share their first ``shared`` tokens (a
        few-shot preamble): the preamble's KV cache is computed once, then every row's rest
        is left-padded after it; position ids keep counting over real tokens only."""
        device = self.loaded.input_device
        head = torch.tensor([prompts[0][:shared - 1]], device=device)
        ones = torch.ones_like(head)
        past = self._cache_of(self._forward(head, ones, (ones.cumsum(-1) - 1), None))
        past.batch_repeat_interleave(len(prompts))
        rests = [p[shared - 1:] for p in prompts]  # at least one token each
        ids, mask, _ = self._left_padded(rests)
        full_mask = torch.cat([ones.expand(len(prompts), -1), mask], dim=1)
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, shared - 1:]
        return self._forward(ids, full_mask, positions, past)

    def _left_padded(self, prompts):
        """(ids, mask, position ids) of a left-padded batch on the input device."""
        device = self.loaded.input_device
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros(len(prompts), width, dtype=torch.long)
        for b, p in enumerate(prompts):  # left padding: every row ends at the same column
            ids[b, width - len(p):] = torch.tensor(p)
            mask[b, width - len(p):] = 1
        ids, mask = ids.to(device), mask.to(device)
        return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)

    @torch.inference_mode()
    def _decode(self, prompts, max_new_tokens, stop_on_newline, rec, on_progress=None):
        lens = torch.tensor([len(p) for p in prompts])
        width = int(lens.max())
        ids, mask, positions = self._left_padded(prompts)
        device = ids.device
        with _hooks(self, rec.take if rec else None):
            if rec:
                rec.keep = min(self.lookback, width)
            out = self._forward(ids, mask, positions, None)
            if rec:
                rec.flush_prompt()
                rec.keep = 1
            gen, reasons, logps = self._loop(out.logits[:, -1, :], self._cache_of(out), mask,
                                             lens.to(device), max_new_tokens,
                                             (stop_on_newline, rec, on_progress, None))
        return gen, reasons, logps

    def _loop(self, logits, past, mask, lens, max_new_tokens, options):
        """Decode steps from the prompt's last logits and KV cache. A row leaves the batch
        once it has stopped (and, when recording, once its stop token has been fed), so long
        answers do not make short ones pay. ``choose(logits, rows)`` picks each slot's next
        token (None: greedy); ``rows`` maps batch slots to the original rows."""
        stop_on_newline, rec, on_progress, choose = options
        n = len(lens)
        gen: list[list[int]] = [[] for _ in range(n)]
        logps: list[list[float]] = [[] for _ in range(n)]
        reasons: list[str | None] = [None] * n
        rows = list(range(n))  # batch slot -> original row
        for step in range(max_new_tokens):
            tok = logits.float().argmax(-1) if choose is None else choose(logits, rows)
            lp = torch.log_softmax(logits.float(), -1).gather(1, tok[:, None])[:, 0]
            for b, t, v in zip(rows, tok.tolist(), lp.tolist(), strict=True):
                gen[b].append(t)
                logps[b].append(v)
                reasons[b] = self._stop_reason(t, len(gen[b]), max_new_tokens, stop_on_newline)
            if on_progress is not None:
                on_progress(sum(reasons[b] is not None for b in rows), len(rows))
            # When recording, stopped rows are fed once more so that their last token (EOS,
            # position -1) gets its hidden states; otherwise they leave right away.
            feed = [i for i, b in enumerate(rows) if rec or reasons[b] is None]
            if not feed:
                break
            rows, past, (tok, mask, lens) = _select(feed, rows, past, tok, mask, lens)
            mask = torch.cat([mask, mask.new_ones(len(rows), 1)], dim=1)
            out = self._forward(tok[:, None].to(mask.device), mask, (lens + step)[:, None], past)
            logits, past = out.logits[:, -1, :], self._cache_of(out)
            if rec:
                rec.flush_step(rows)
            alive = [i for i, b in enumerate(rows) if reasons[b] is None]
            if not alive:
                break
            rows, past, (logits, mask, lens) = _select(alive, rows, past, logits, mask, lens)
        return gen, reasons, logps

    def _stop_reason(self, tok: int, n_gen: int, limit: int, stop_on_newline: bool) -> str | None:
        if tok in self.eos_ids:
            return "eos"
        if stop_on_newline and self._is_newline(tok):
            return "newline"
        return "max_new_tokens" if n_gen >= limit else None

    def _is_newline(self, tok: int) -> bool:
        if tok not in self._newline:
            self._newline[tok] = "\n" in self.tokenizer.decode([tok])
        return self._newline[tok]

    def _forward(self, ids, mask, positions, past):
        return self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                          use_cache=True, **{self._cache_kw: past}, **self._keep_kw)

    def _cache_of(self, out):
        return getattr(out, self._cache_kw)

    # -- re-forward ---------------------------------------------------------------------

    @torch.inference_mode()
    def _reforward(self, sequences, idx, mask, sites) -> dict[str, torch.Tensor]:
        device = self.loaded.input_device
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        attn = torch.zeros(len(sequences), width, dtype=torch.long)
        for b, s in enumerate(sequences):  # right padding keeps indices unpadded
            ids[b, :len(s)] = torch.tensor(s)
            attn[b, :len(s)] = 1
        rec = _GatherRecorder(self, idx, mask, sites)
        with _hooks(self, rec.take, sites):
            self.model(input_ids=ids.to(device), attention_mask=attn.to(device),
                       position_ids=(attn.cumsum(-1) - 1).clamp(min=0).to(device),
                       use_cache=False, **self._keep_kw)
        return rec.out


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (getattr(model, "generation_config", None), model.config, tokenizer):
        value = getattr(source, "eos_token_id", None)
        if value is not None:
            ids.update([value] if isinstance(value, int) else value)
    return ids


def _select(keep: list[int], rows: list[int], past: Any, *tensors: torch.Tensor):
    """Keep batch slots `keep` of the rows, the KV cache and each tensor."""
    if len(keep) == len(rows):
        return rows, past, tensors
    idx = torch.tensor(keep, device=tensors[0].device)
    past.batch_select_indices(idx)
    return [rows[i] for i in keep], past, tuple(t[idx.to(t.device)] for t in tensors)


def common_prefix(rows: Sequence[Sequence[int]]) -> int:
    """How many leading tokens every row has in common."""
    first, n = rows[0], min(len(r) for r in rows)
    for k in range(n):
        if any(r[k] != first[k] for r in rows[1:]):
            return k
    return n


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Row indices grouped into batches of similar length (less padding, same results)."""
    order = sorted(range(len(lengths)), key=lambda r: (lengths[r], r))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


# -- hooks ------------------------------------------------------------------------------

Take = Callable[[str, int, torch.Tensor], None]


@contextmanager
def _hooks(engine: CaptureEngine, take: Take | None, sites: Sequence[str] | None = None):
    """Register capture hooks for the sites (default: the engine's);
    `take(site, slot, [B, T, d])`."""
    handles = []
    if take is not None:
        for site in sites or engine.sites:
            handles += _register(engine.layers, site, take)
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _register(layers: torch.nn.ModuleList, site: str, take: Take) -> list:
    handles = []
    if site == "head":
        # CaptureEngine checked that every layer has one (head_projections)
        for k, (_, module) in enumerate(map(_projection, layers)):
            def head_pre(_module, args, kwargs, slot=k + 1):
                take("head", slot, args[0] if args else next(iter(kwargs.values())))
            handles.append(module.register_forward_pre_hook(head_pre, with_kwargs=True))
        return handles
    if site == "resid":
        def pre(_module, args, kwargs):
            take("resid", 0, args[0] if args else kwargs["hidden_states"])
        handles.append(layers[0].register_forward_pre_hook(pre, with_kwargs=True))
    for k, layer in enumerate(layers):
        module = layer if site == "resid" else _submodule(layer, site)
        slot = k + 1  # resid k+1 = output of layer k; mlp/attn k+1 = inside layer k

        def post(_module, _args, output, site=site, slot=slot):
            take(site, slot, _as_tensor(output))
        handles.append(module.register_forward_hook(post))
    return handles


class _StreamRecorder:
    """Mode "generate": keeps the last `keep` positions of every forward, moved to CPU."""

    def __init__(self, engine: CaptureEngine):
        self.engine, self.keep = engine, 0
        self.current: dict[str, dict[int, torch.Tensor]] = {s: {} for s in engine.sites}
        self.prompt: dict[str, torch.Tensor] = {}
        self.steps: dict[str, list[torch.Tensor]] = {s: [] for s in engine.sites}
        self.step_rows: list[list[int]] = []

    def take(self, site: str, slot: int, hidden: torch.Tensor) -> None:
        kept = hidden[:, hidden.shape[1] - self.keep:, :]
        # A view would keep every layer's full prefill output alive until the flush.
        self.current[site][slot] = kept.clone() if self.keep < hidden.shape[1] else kept

    def _stacked(self, site: str) -> torch.Tensor:
        slots = self.current[site]
        parts = [slots[k] for k in sorted(slots)]
        stacked = torch.stack([t.to(parts[0].device) for t in parts])
        self.current[site] = {}
        # Kept on the model's device until the batch is gathered: a copy to the host at
        # every decode step would make each token wait for the GPU.
        return stacked.to(self.engine.capture_dtype)

    def flush_prompt(self) -> None:
        for site in self.engine.sites:
            self.prompt[site] = self._stacked(site)  # [n_l, B, keep, d]

    def flush_step(self, rows: list[int]) -> None:
        self.step_rows.append(list(rows))
        for site in self.engine.sites:
            self.steps[site].append(self._stacked(site)[:, :, 0])  # [n_l, len(rows), d]


class _GatherRecorder:
    """Mode "reforward": keeps only the requested positions of each row."""

    def __init__(self, engine: CaptureEngine, idx: torch.Tensor, mask: torch.Tensor,
                 sites: Sequence[str]):
        self.idx, self.mask = idx, mask
        self.out = {s: torch.zeros(len(idx), len(engine.layers_of(s)), idx.shape[1],
                                   engine.widths[s], dtype=engine.capture_dtype)
                    for s in sites}
        self.first = {s: engine.layers_of(s)[0] for s in sites}

    def take(self, site: str, slot: int, hidden: torch.Tensor) -> None:
        rows = torch.arange(len(self.idx), device=hidden.device)[:, None]
        picked = hidden[rows, self.idx.to(hidden.device)].to("cpu", self.out[site].dtype)
        self.out[site][:, slot - self.first[site]] = picked * self.mask[:, :, None]
