"""Loading models (built-in, local folder, GGUF file, hub id) and prompt templates.

Exports resolve lazily so `probeheat.models.builtin` (the list of built-in models) can be
imported without torch.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "BUILTIN_MODELS": "probeheat.models.builtin",
    "LoadedModel": "probeheat.models.load",
    "load_model": "probeheat.models.load",
    "PromptFormat": "probeheat.models.prompts",
    "build_prompt": "probeheat.models.prompts",
    "encode_prompt": "probeheat.models.prompts",
    "prompt_format": "probeheat.models.prompts",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'probeheat.models' has no attribute {name!r}")
