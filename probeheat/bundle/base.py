"""Shared pieces of every bundle kind: opening, lazy JSON and tensor access, atomic writing."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from .. import __version__
from ..errors import UserError
from .manifest import (
    DAMAGED_FIX,
    MANIFEST,
    build_manifest,
    check_member,
    load_manifest_json,
    sha256_file,
    write_json_atomic,
)
from .migrate import upgrade, upgrade_meta


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def new_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{uuid.uuid4().hex[:8]}"


def read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(str(path), "file listed in the manifest is missing", DAMAGED_FIX) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(str(path), f"invalid JSON ({exc})", DAMAGED_FIX) from None


@contextlib.contextmanager
def open_tensors(path: Path):
    """safe_open with one-line errors: the header is read, tensor data only on request."""
    try:
        handle = safe_open(str(path), framework="numpy")
    except FileNotFoundError:
        raise UserError(str(path), "file listed in the manifest is missing", DAMAGED_FIX) from None
    except Exception as exc:  # safetensors raises its own error types for bad headers
        raise UserError(str(path), f"not a readable safetensors file ({exc})", DAMAGED_FIX) from None
    with handle as f:
        yield f


def get_tensor(f, name: str, path: Path) -> np.ndarray:
    try:
        if f.get_slice(name).get_dtype() == "BF16":
            need_bfloat16()
        return f.get_tensor(name)
    except Exception as exc:
        raise UserError(str(path), f"cannot read tensor {name!r} ({exc})", DAMAGED_FIX) from None


def need_bfloat16() -> None:
    """Register bfloat16 with numpy (safetensors.numpy needs it to read BF16 tensors).

    Imported only when a BF16 tensor is read or written: ml_dtypes costs ~0.5 s at start-up,
    which inspect, verify and the viewer need not pay for float16/float32 bundles.
    """
    import ml_dtypes  # noqa: F401


class Bundle:
    """A bundle folder opened lazily: only manifest.json is read up front."""

    kind = ""
    meta_file = ""

    def __init__(self, root: Path, manifest: dict):
        self.path = root
        self.manifest = manifest
        self.id: str = manifest.get("id", root.name)

    @cached_property
    def content_hash(self) -> str:
        return sha256_file(self.path / MANIFEST)

    def member(self, name: str) -> Path:
        where = str(self.path / MANIFEST)
        if name not in self.manifest["files"]:
            raise UserError(str(self.path), f"manifest does not list {name}", DAMAGED_FIX)
        return check_member(name, self.path, where)

    @cached_property
    def meta(self) -> dict:
        meta = read_json(self.member(self.meta_file))
        if not isinstance(meta, dict):
            raise UserError(str(self.path / self.meta_file), "metadata is not a JSON object", DAMAGED_FIX)
        return upgrade_meta(self.kind, meta, self.manifest, self.path)

    def require(self, key: str):
        if key not in self.meta:
            raise UserError(str(self.path / self.meta_file), f"metadata lacks {key!r}", DAMAGED_FIX)
        return self.meta[key]


def read_manifest(root: Path) -> dict:
    """Read, validate and upgrade a manifest; refuses unsafe entries and unknown kinds."""
    from .manifest import KINDS

    root = Path(root)
    manifest = upgrade(load_manifest_json(root), root)
    where = str(root / MANIFEST)
    if manifest.get("kind") not in KINDS:
        raise UserError(where, f"unknown bundle kind {manifest.get('kind')!r}", DAMAGED_FIX)
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise UserError(where, "manifest has no 'files' table", DAMAGED_FIX)
    for name, entry in files.items():
        check_member(name, root, where)
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise UserError(where, f"entry for {name!r} lacks sha256", DAMAGED_FIX)
    return manifest


def save_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a safetensors file through a temporary name and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    # np.ascontiguousarray would turn 0-d arrays into 1-d ones
    save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, str(tmp))
    os.replace(tmp, path)


class BundleWriter:
    """Write a bundle into a hidden temporary folder; it appears under its name only when whole.

    Use as a context manager: on success the manifest is written last and the folder is
    renamed into place (replacing an older bundle only with ``overwrite=True``); on error the
    temporary folder is removed and nothing at ``out`` changes.
    """

    def __init__(self, out: Path, kind: str, *, overwrite: bool = False, bundle_id: str | None = None):
        self.out = Path(out)
        self.kind = kind
        self.overwrite = overwrite
        self.id = bundle_id or new_id(kind)
        check_destination(self.out, overwrite)
        self.tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:6]}")

    def __enter__(self) -> BundleWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir()
        return self

    def write_json(self, name: str, obj: object) -> None:
        write_json_atomic(self.tmp / name, obj)

    def write_tensors(self, name: str, tensors: dict[str, np.ndarray]) -> None:
        save_tensors(self.tmp / name, tensors)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        publish(self.tmp, self.out, self.kind, self.id, self.overwrite)


def check_destination(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise UserError(str(out), "already exists", "pass --overwrite to replace it or choose another path")


def publish(tmp: Path, out: Path, kind: str, bundle_id: str, overwrite: bool) -> None:
    """Write the manifest, then move the finished folder into place in one rename."""
    manifest = build_manifest(tmp, kind, bundle_id, now_iso(), f"probeheat {__version__}")
    write_json_atomic(tmp / MANIFEST, manifest)
    old = None
    if out.exists():
        if not overwrite:
            raise UserError(str(out), "appeared while writing", "choose another path")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:6]}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
