"""Load a causal LM and its tokenizer from a built-in name, a local folder, a GGUF file or a hub id."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from probeheat.errors import UserError, did_you_mean
from probeheat.hashing import sha256_file
from probeheat.models.builtin import BUILTIN_MODELS, provision

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("auto", "cpu", "cuda")
# Hashing every weight byte of a local folder is cheap next to loading it, up to a point.
_FULL_HASH_LIMIT = 20 * 2**30
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel in eval mode
    tokenizer: Any
    info: dict = field(default_factory=dict)

    @property
    def input_device(self) -> torch.device:
        """Where input ids must go: the embedding's device (differs per layer with device_map)."""
        return self.model.get_input_embeddings().weight.device


def load_model(
    spec: str,
    *,
    device: str = "auto",
    dtype: str = "float32",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> LoadedModel:
    """Load `spec` for inference; every user mistake ends in a one-line UserError."""
    torch_dtype = _check_dtype(dtype)
    target = _check_device(device, device_map)
    kind, location, gguf_file, content_revision = _resolve(spec)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if revision is not None:
        if kind != "hub":
            raise UserError("--revision", f"a revision only applies to hub ids, not to {spec}",
                            "drop --revision")
        kwargs["revision"] = revision
    if gguf_file is not None:
        kwargs["gguf_file"] = gguf_file
    if kind == "hub" and hub_unreachable():
        kwargs["local_files_only"] = True  # the HF cache at once, not a minute of retries
    tokenizer = _load_tokenizer(spec, location, kwargs)
    model = _load_weights(spec, location, kwargs, torch_dtype, device_map)
    if device_map is None:
        model.to(target)
    model.eval()
    _ensure_pad_token(spec, tokenizer, model)
    if kind == "hub":
        content_revision = getattr(model.config, "_commit_hash", None) or revision
    loaded = LoadedModel(model=model, tokenizer=tokenizer)
    loaded.info = _describe(spec, kind, content_revision, loaded, dtype)
    return loaded


def _check_dtype(dtype: str) -> torch.dtype:
    if dtype not in DTYPES:
        raise UserError("--dtype", f"unknown dtype {dtype!r}", f"use one of {', '.join(DTYPES)}")
    return DTYPES[dtype]


def _check_device(device: str, device_map: str | None) -> str:
    if device not in DEVICES:
        raise UserError("--device", f"unknown device {device!r}", "use auto, cpu or cuda")
    if device_map not in (None, "auto"):
        raise UserError("--device-map", f"unknown device map {device_map!r}", "use auto")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise UserError("--device", "cuda was requested but no GPU is visible to torch",
                        "use --device cpu, or install a CUDA build of torch")
    if device_map == "auto":
        _require_accelerate()
    return "cuda" if device == "cuda" or (device == "auto" and has_cuda) else "cpu"


def _require_accelerate() -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError:
        raise UserError("--device-map", "device_map=auto needs the accelerate package",
                        "pip install accelerate") from None


def _resolve(spec: str) -> tuple[str, str, str | None, str | None]:
    """(kind, location, gguf file name, content revision) for a model spec."""
    if spec in BUILTIN_MODELS:
        folder, rev = provision(spec)
        return "builtin", str(folder), None, rev
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(spec, "folder has no config.json, so it is not a Hugging Face model",
                            "pass a folder written by save_pretrained, a .gguf file or a hub id")
        return "local", str(path), None, _folder_hash(path)
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise UserError(spec, "no such GGUF file", "check the path")
        _require_accelerate()  # transformers needs it to de-quantise GGUF tensors
        return "gguf", str(path.parent), path.name, "sha256:" + sha256_file(path)
    if path.exists() or not _HUB_ID.match(spec):
        raise UserError(spec, "unknown model path or name",
                        f"pass a built-in name ({', '.join(BUILTIN_MODELS)}), a model folder, "
                        "a .gguf file or a hub id like org/name")
    return "hub", spec, None, None


def _folder_hash(path: Path) -> str:
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    total = sum(p.stat().st_size for p in files)
    digest = hashlib.sha256()
    for p in files:
        digest.update(f"{p.relative_to(path)}\0{p.stat().st_size}\0".encode())
        if total <= _FULL_HASH_LIMIT:
            digest.update(bytes.fromhex(sha256_file(p)))
    # "files:" marks a hash of names and sizes only, for folders too large to read twice.
    return ("sha256:" if total <= _FULL_HASH_LIMIT else "files:") + digest.hexdigest()


def hub_unreachable() -> bool:
    """True when the hub cannot be reached: HF_HUB_OFFLINE is set, or the hub's host has no
    address (an offline box). One name lookup; without it a mistyped name on such a box
    waited through the hub client's retries (about 48 s and two dozen lines)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname
    try:
        socket.getaddrinfo(host or "huggingface.co", 443)
    except OSError:
        return True
    return False


def _unknown(spec: str, err: Exception) -> UserError:
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    return UserError(spec, f"unknown model path or name, or the hub is unreachable ({detail})",
                     f"{did_you_mean(spec, BUILTIN_MODELS)}pass a built-in name ({', '.join(BUILTIN_MODELS)}), a model "
                     "folder or a .gguf file; hub ids need network access or a filled HF cache")


def _load_tokenizer(spec: str, location: str, kwargs: dict) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise UserError(spec, "this model needs its own code to load",
                            "pass --trust-remote-code if you trust it") from None
        raise _unknown(spec, err) from None


def _load_weights(spec: str, location: str, kwargs: dict, torch_dtype, device_map) -> Any:
    from transformers import AutoModelForCausalLM

    extra = {"device_map": device_map} if device_map else {}
    try:
        return AutoModelForCausalLM.from_pretrained(location, dtype=torch_dtype, **kwargs, **extra)
    except (OSError, ValueError) as err:
        if "trust_remote_code" in str(err):
            raise UserError(spec, "this model needs its own code to load",
                            "pass --trust-remote-code if you trust it") from None
        if "Unrecognized configuration class" in str(err):
            raise UserError(spec, "not a causal language model (no AutoModelForCausalLM class)",
                            "pass a decoder-only model") from None
        raise _unknown(spec, err) from None


def _ensure_pad_token(spec: str, tokenizer: Any, model: Any) -> None:
    # Padding is always masked out, so any id works; reusing EOS avoids resizing embeddings.
    if tokenizer.pad_token_id is not None:
        return
    if tokenizer.eos_token is None:
        raise UserError(spec, "tokenizer has neither a pad nor an EOS token",
                        "use a tokenizer that defines eos_token")
    tokenizer.pad_token = tokenizer.eos_token


def _describe(spec: str, kind: str, revision: str | None, loaded: LoadedModel, dtype: str) -> dict:
    config = loaded.model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    archs = getattr(config, "architectures", None) or [type(loaded.model).__name__]
    return {
        "model_id": spec,
        "revision": revision,
        "source": kind,
        "architecture": archs[0],
        "model_type": getattr(config, "model_type", None),
        "n_layers": int(text.num_hidden_layers),
        "hidden_size": int(text.hidden_size),
        "is_chat": bool(getattr(loaded.tokenizer, "chat_template", None)),
        "dtype": dtype,
        "device": str(loaded.input_device),
        "n_parameters": int(sum(p.numel() for p in loaded.model.parameters())),
    }
