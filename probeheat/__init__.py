"""probeheat: layer x token probing heatmaps for error detection in language models.

Importing this package is cheap: it loads none of torch, transformers, textual,
matplotlib, pandas, ml_dtypes or safetensors. Heavy libraries are imported inside the
commands that need them. ``probeheat.open(path)`` (probeheat/api.py, loaded on first use)
opens a bundle for a notebook: a Run, a Grid or a Generalization.
"""

__version__ = "0.1.0"

_API = ("open", "Run", "Grid", "Generalization")


def __getattr__(name: str):
    """``probeheat.open`` and the bundle objects, imported on first use (PEP 562)."""
    if name in _API:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
