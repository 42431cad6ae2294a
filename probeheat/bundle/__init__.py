"""probeheat's artifact bundles: folders of JSON metadata and safetensors tensors.

The format is specified in artifacts/FORMAT.md. Opening a bundle reads only manifest.json;
metadata, records and tensors are read when asked for, one layer at a time.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from .base import Bundle, BundleWriter, read_manifest
from .grid import GeneralizationBundle, GridBundle, write_generalization, write_grid
from .manifest import FORMAT_NAME, FORMAT_VERSION

if TYPE_CHECKING:
    from .run import RunAlreadyComplete, RunBundle, RunWriter, tensor_name
    from .selection import SelectionBundle, write_selection
    from .steer import SteerBundle, write_steer
    from .verify import verify_bundle

# The other kinds' modules load when first named (`from probeheat.bundle import RunBundle`
# works as before): the viewer and `inspect GRID` need the grid reader alone.
LAZY = {
    "RunAlreadyComplete": ".run", "RunBundle": ".run", "RunWriter": ".run",
    "tensor_name": ".run", "SelectionBundle": ".selection", "write_selection": ".selection",
    "SteerBundle": ".steer", "write_steer": ".steer", "verify_bundle": ".verify",
}
KIND_CLASSES: dict[str, tuple[str, str]] = {  # kind: (module, class)
    "run": (".run", "RunBundle"),
    "grid": (".grid", "GridBundle"),
    "generalization": (".grid", "GeneralizationBundle"),
    "steer": (".steer", "SteerBundle"),
    "selection": (".selection", "SelectionBundle"),
}


def __getattr__(name: str):
    if name in LAZY:
        value = getattr(importlib.import_module(LAZY[name], __name__), name)
        globals()[name] = value  # found directly from now on
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | LAZY.keys())


def open_bundle(path: str | Path) -> Bundle:
    """Open any bundle kind; raises UserError (one line) for anything that is not a sound bundle."""
    root = Path(path)
    manifest = read_manifest(root)
    module, name = KIND_CLASSES[manifest["kind"]]
    return getattr(importlib.import_module(module, __name__), name)(root, manifest)


def _open_kind(path: str | Path, kind: str, fix: str) -> Bundle:
    bundle = open_bundle(path)
    if bundle.kind != kind:
        raise UserError(str(path), f"is a {bundle.kind} bundle, not a {kind} bundle", fix)
    return bundle


def open_run(path: str | Path) -> RunBundle:
    return _open_kind(path, "run", "pass a run bundle written by `probeheat run`")


def open_grid(path: str | Path) -> GridBundle:
    return _open_kind(path, "grid", "pass a grid bundle written by `probeheat probe`")


def open_selection(path: str | Path) -> SelectionBundle:
    return _open_kind(path, "selection", "pass a selection bundle written by `probeheat select`")


def open_steer(path: str | Path) -> SteerBundle:
    return _open_kind(path, "steer", "pass a steer bundle written by `probeheat steer`")


__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "Bundle", "BundleWriter", "RunBundle", "RunWriter",
    "RunAlreadyComplete", "GridBundle", "GeneralizationBundle", "open_bundle", "open_run",
    "open_grid", "write_grid", "write_generalization", "verify_bundle", "tensor_name",
    "SteerBundle", "open_steer", "write_steer", "SelectionBundle", "open_selection",
    "write_selection",
]
