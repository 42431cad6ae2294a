"""Shared pieces of every bundle kind: opening, checked JSON and tensor access, atomic writing.

Reading is validated once, on the way in: the manifest and every metadata file are checked
against the format (``schema``), every listed file's size and SHA-256 are checked before its
values are used (each file hashed once per process; ``checksums(False)`` skips it, for users
who verified a copy already), and each tensor's dtype and shape are checked against the
metadata before its values are read.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

from .. import __version__
from ..errors import UserError
from .manifest import (
    DAMAGED_FIX,
    MANIFEST,
    build_manifest,
    check_member,
    check_seal,
    load_manifest_json,
    sha256_file,
    write_json_atomic,
)
from .migrate import upgrade, upgrade_meta
from .schema import MAX_DEPTH, check_manifest_fields, depth, load_json
from .tensorfile import TensorFile

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where tensor values are read or written as arrays, not here: opening a
# bundle, its metadata and its tensor headers (tensorfile.py) need the standard library only.

SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}
_VERIFY = [True]
_HASHED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime) -> sha256 seen


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def new_id(kind: str) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{kind}-{stamp}-{uuid.uuid4().hex[:8]}"


def read_json(path: Path) -> object:
    """A bundle's JSON file, bounded in size and depth, with one-line errors."""
    return load_json(path)


@contextlib.contextmanager
def checksums(enabled: bool) -> Iterator[None]:
    """Check (default) or skip each listed file's SHA-256 before its values are used."""
    _VERIFY.append(bool(enabled))
    try:
        yield
    finally:
        _VERIFY.pop()


def checked_file(path: Path, entry: dict, where: str) -> Path:
    """``path`` after its size and SHA-256 match the manifest ``entry`` (hashed once)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise UserError(str(path), "file listed in the manifest is missing", DAMAGED_FIX) from None
    size = entry.get("size", -1)
    if size not in (None, -1) and stat.st_size != size:
        raise UserError(str(path), f"size {stat.st_size} bytes, the manifest says {size} "
                        "(truncated or extended)", DAMAGED_FIX)
    if not _VERIFY[-1]:
        return path
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    digest = _HASHED.get(key) or sha256_file(path)
    if digest != entry["sha256"]:
        raise UserError(str(path), "sha256 does not match the manifest (file changed or "
                        "corrupted)", DAMAGED_FIX + "; --no-verify reads it anyway")
    _HASHED[key] = digest
    return path


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


def tensor_header(f, name: str, path: Path) -> tuple[list[int], str]:
    """(shape, safetensors dtype) of a tensor, from the header only."""
    if name not in f.keys():
        raise UserError(str(path), f"tensor {name!r} is missing", DAMAGED_FIX)
    piece = f.get_slice(name)
    return list(piece.get_shape()), piece.get_dtype()


def expect_tensor(f, name: str, path: Path, dtype: str | tuple[str, ...] | None,
                  shape: list[int | None] | None) -> list[int]:
    """Refuse a tensor whose dtype or shape is not what the metadata says (None: any)."""
    got_shape, got_dtype = tensor_header(f, name, path)
    allowed = (dtype,) if isinstance(dtype, str) else dtype
    if allowed is not None and got_dtype not in allowed:
        raise UserError(str(path), f"tensor {name!r} has dtype {got_dtype}, metadata says "
                        f"{'/'.join(allowed)}", DAMAGED_FIX)
    if shape is not None and (len(got_shape) != len(shape) or any(
            want is not None and got != want for got, want in zip(got_shape, shape,
                                                                  strict=False))):
        shown = [("*" if s is None else s) for s in shape]
        raise UserError(str(path), f"tensor {name!r} has shape {got_shape}, metadata says "
                        f"{shown}", DAMAGED_FIX)
    return got_shape


def get_tensor(f, name: str, path: Path, dtype=None, shape=None) -> np.ndarray:
    """A tensor's values, after its header matched ``dtype`` and ``shape`` (when given)."""
    got_dtype = tensor_header(f, name, path)[1]
    if dtype is not None or shape is not None:
        expect_tensor(f, name, path, dtype, shape)
    try:
        if got_dtype == "BF16":
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
    tensors_file = ""  # the kind's safetensors file, for tensor_names and read_tensor

    def __init__(self, root: Path, manifest: dict):
        self.path = root
        self.manifest = manifest
        self.id: str = manifest.get("id", root.name)

    @cached_property
    def content_hash(self) -> str:
        return sha256_file(self.path / MANIFEST)

    def member(self, name: str, *, checksum: bool = True) -> Path:
        """The path of a listed file, after its size and checksum match the manifest
        (``checksum=False``: the size only, for reading a tensor header, never values)."""
        where = str(self.path / MANIFEST)
        if name not in self.manifest["files"]:
            raise UserError(str(self.path), f"manifest does not list {name}", DAMAGED_FIX)
        path = check_member(name, self.path, where)
        if not checksum:
            with checksums(False):
                return checked_file(path, self.manifest["files"][name], where)
        return checked_file(path, self.manifest["files"][name], where)

    @cached_property
    def meta(self) -> dict:
        where = str(self.path / self.meta_file)
        meta = read_json(self.member(self.meta_file))
        if not isinstance(meta, dict):
            raise UserError(where, "metadata is not a JSON object", DAMAGED_FIX)
        meta = upgrade_meta(self.kind, meta, self.manifest, self.path)
        self.check_meta(meta, where)
        return meta

    def check_meta(self, meta: dict, where: str) -> None:
        """Each kind checks its metadata against the format (schema.check_*_meta)."""

    @cached_property
    def tensor_names(self) -> list[str]:
        """The tensors ``tensors_file`` holds (its header only)."""
        return self.header.keys()

    @cached_property
    def header(self) -> TensorFile:
        """``tensors_file``'s header, read once and checked as safetensors checks it."""
        return TensorFile(self.member(self.tensors_file))

    def read_tensor(self, name: str, spec: tuple | None) -> np.ndarray:
        """A tensor of ``tensors_file``, with the (dtype, shape) ``spec`` checked where
        given; a missing tensor is damage."""
        path = self.member(self.tensors_file)
        if name not in self.tensor_names:
            raise UserError(str(path), f"tensor {name!r} is missing", DAMAGED_FIX)
        with open_tensors(path) as f:
            return get_tensor(f, name, path, *(spec or (None, None)))

    def require(self, key: str):
        if key not in self.meta:
            raise UserError(str(self.path / self.meta_file), f"metadata lacks {key!r}", DAMAGED_FIX)
        return self.meta[key]


def read_manifest(root: Path) -> dict:
    """Read, validate and upgrade a manifest; refuses unsafe entries and unknown kinds."""
    from .manifest import KINDS

    root = Path(root)
    raw = load_manifest_json(root)
    where = str(root / MANIFEST)
    if depth(raw) > MAX_DEPTH:
        raise UserError(where, f"JSON nested more than {MAX_DEPTH} levels deep", DAMAGED_FIX)
    manifest = upgrade(raw, root)  # a newer major version is refused before anything else
    if manifest.get("kind") not in KINDS:
        raise UserError(where, f"unknown bundle kind {manifest.get('kind')!r}", DAMAGED_FIX)
    check_manifest_fields(manifest, where)
    for name in manifest["files"]:
        check_member(name, root, where)  # entries that leave the bundle: said as such
    if "format" in raw and _VERIFY[-1]:
        check_seal(raw, where)
    return manifest


def save_tensors(path: Path, tensors: dict[str, np.ndarray]) -> None:
    """Write a safetensors file through a temporary name and a rename.

    A full disk or any other write failure is an OSError, with the temporary file removed.
    """
    import numpy as np
    from safetensors.numpy import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        # np.ascontiguousarray would turn 0-d arrays into 1-d ones
        save_file({k: np.require(v, requirements="C") for k, v in tensors.items()}, str(tmp))
        os.chmod(tmp, 0o666 & ~umask())  # safetensors writes 0600; follow the umask instead
        os.replace(tmp, path)
    except SafetensorError as exc:  # safetensors reports I/O failures as its own error
        code = errno.ENOSPC if "No space" in str(exc) else errno.EIO
        raise OSError(code, os.strerror(code) if code == errno.ENOSPC else str(exc),
                      str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


@functools.cache
def umask() -> int:
    """The process's umask (read once: reading it means setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def os_error(exc: OSError, where: Path, fix: str) -> UserError:
    """An OSError (full disk, permissions, ...) as one line."""
    return UserError(str(where), f"cannot write ({exc.strerror or exc})", fix)


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
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.tmp.mkdir()
        except OSError as exc:
            raise os_error(exc, self.out, "choose a folder you can write to") from None
        return self

    def write_json(self, name: str, obj: object) -> None:
        write_json_atomic(self.tmp / name, obj)

    def write_tensors(self, name: str, tensors: dict[str, np.ndarray]) -> None:
        save_tensors(self.tmp / name, tensors)

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                publish(self.tmp, self.out, self.kind, self.id, self.overwrite)
                return False
            except OSError as error:
                exc_type, exc = OSError, error
        shutil.rmtree(self.tmp, ignore_errors=True)
        if issubclass(exc_type, OSError):
            raise os_error(exc, self.out, "free some space or choose another path; nothing "
                           "was written") from None
        return False


def check_destination(out: Path, overwrite: bool) -> None:
    """Refuse an existing --out (unless overwriting) and one that cannot be created."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError(str(out), "already exists", "pass --overwrite to replace it or choose another path")
    check_can_create(out)


def check_can_create(out: Path) -> None:
    """Fail now, not after minutes of work, when ``out`` cannot be created: try a scratch
    folder in the nearest existing parent."""
    import tempfile

    parent = Path(out).absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(str(out), f"{parent} is not a folder", "choose another path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".probeheat-check-", dir=parent))
    except OSError as exc:
        raise UserError(str(out), f"cannot create it here ({exc.strerror or exc})",
                        "choose a folder you can write to") from None


def check_not_inside(out: Path, inputs: list[Path], where: str = "--out") -> None:
    """Refuse an output path that is, contains, or lies inside an input bundle."""
    target = Path(out).resolve()
    for source in inputs:
        source = Path(source).resolve()
        if target == source or source in target.parents or target in source.parents:
            raise UserError(where, f"{out} would overwrite or sit inside the input bundle "
                            f"{source}", "write the output beside the input, not into it")


def publish(tmp: Path, out: Path, kind: str, bundle_id: str, overwrite: bool,
            names: list[str] | None = None) -> None:
    """Write the manifest (listing ``names``, or every visible file), then move the finished
    folder into place in one rename."""
    from .faults import fault_point

    manifest = build_manifest(tmp, kind, bundle_id, now_iso(), f"probeheat {__version__}",
                              names=names)
    write_json_atomic(tmp / MANIFEST, manifest)
    fault_point("finalize-manifest")
    old = None
    if out.exists():
        if not overwrite:
            raise UserError(str(out), "appeared while writing", "choose another path")
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:6]}")
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
