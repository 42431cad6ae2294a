"""manifest.json: what a bundle is, which version wrote it, and a checksum of every file.

Only the standard library is used here so that reading a manifest is instant.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path, PurePosixPath

from ..errors import UserError
from ..hashing import sha256_file

FORMAT_NAME = "probeheat-bundle"
FORMAT_VERSION = "1.4"
MANIFEST = "manifest.json"
KINDS = ("run", "grid", "generalization", "steer", "selection")
# Readers only ever open these file types; anything else in a bundle is reported, never loaded.
ALLOWED_SUFFIXES = (".json", ".safetensors")

DAMAGED_FIX = "the bundle is damaged: copy it again or re-create it"

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST", "KINDS", "DAMAGED_FIX", "sha256_file",
           "build_manifest", "check_member", "load_manifest_json", "parse_version",
           "write_json_atomic"]


def parse_version(text: object, where: str) -> tuple[int, int]:
    try:
        major, minor = str(text).split(".")
        return int(major), int(minor)
    except ValueError:
        raise UserError(where, f"format_version {text!r} is not MAJOR.MINOR", DAMAGED_FIX) from None


def check_member(name: object, root: Path, where: str) -> Path:
    """Return the path of a manifest entry, refusing names that leave the bundle."""
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        raise UserError(where, f"file entry {name!r} is not a relative path", DAMAGED_FIX)
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts or name.startswith("~"):
        raise UserError(where, f"file entry {name!r} points outside the bundle; refusing to read it",
                        "only use bundles from sources you trust")
    if pure.as_posix() != name or "." in name.split("/"):
        raise UserError(where, f"file entry {name!r} is not in canonical form (write it as "
                        f"{pure.as_posix()!r})", DAMAGED_FIX)
    if pure.suffix not in ALLOWED_SUFFIXES:
        raise UserError(where, f"file entry {name!r} has a type probeheat never loads "
                        f"(allowed: {', '.join(ALLOWED_SUFFIXES)})", DAMAGED_FIX)
    path = root / pure
    if root.resolve() not in path.resolve().parents:
        raise UserError(where, f"file entry {name!r} resolves outside the bundle (symlink?)",
                        "only use bundles from sources you trust")
    return path


def load_manifest_json(root: Path) -> dict:
    """Read manifest.json as written on disk (any version), with one-line errors."""
    if not root.exists():
        raise UserError(str(root), "no such file or directory", "check the path")
    if not root.is_dir():
        raise UserError(str(root), "not a bundle: bundles are folders holding manifest.json",
                        "pass the bundle folder")
    path = root / MANIFEST
    if not path.is_file():
        inside = sorted(p.name for p in root.iterdir() if (p / MANIFEST).is_file())[:8] \
            if os.access(root, os.R_OK | os.X_OK) else []
        if inside:  # probe --probe a,b / --target error-type write OUT/<name>
            raise UserError(str(root), f"is a folder of bundles ({', '.join(inside)}), not a "
                            "bundle", f"pass one of them, e.g. {root / inside[0]}")
        raise UserError(str(root), "not a probeheat bundle: no manifest.json",
                        "pass a folder written by `probeheat run` or `probeheat probe`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UserError(str(path), "manifest is not UTF-8 text", DAMAGED_FIX) from None
    except json.JSONDecodeError as exc:
        raise UserError(str(path), f"invalid JSON (line {exc.lineno}: {exc.msg})", DAMAGED_FIX) from None
    except RecursionError:
        raise UserError(str(path), "JSON nested too deeply", DAMAGED_FIX) from None
    if not isinstance(manifest, dict):
        raise UserError(str(path), "manifest is not a JSON object", DAMAGED_FIX)
    return manifest


def build_manifest(root: Path, kind: str, bundle_id: str, created: str, writer: str,
                   names: list[str] | None = None) -> dict:
    """The manifest of a folder: ``names`` if given, else every file but hidden ones (a
    writer's temporaries and locks are never content)."""
    if names is None:
        names = [p.relative_to(root).as_posix() for p in sorted(root.rglob("*")) if p.is_file()]
        names = [n for n in names if n != MANIFEST
                 and not any(part.startswith(".") for part in n.split("/"))]
    files = {}
    for name in sorted(names):
        path = root / name
        files[name] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return seal({
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "id": bundle_id,
        "created": created,
        "writer": writer,
        "files": files,
    })


SEAL = "manifest_sha256"


def manifest_digest(manifest: dict) -> str:
    """SHA-256 of the manifest's content without its seal: keys sorted, no spaces, UTF-8."""
    body = {k: v for k, v in manifest.items() if k != SEAL}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def seal(manifest: dict) -> dict:
    """The manifest with its own checksum, so a changed byte in it is noticed too."""
    return {**manifest, SEAL: manifest_digest(manifest)}


def check_seal(manifest: dict, where: str) -> None:
    """Refuse a manifest (format 1.1 and later) whose content does not match its seal."""
    if SEAL not in manifest:
        if parse_version(manifest.get("format_version"), where) >= (1, 1):
            raise UserError(where, f"lacks {SEAL!r}", DAMAGED_FIX)
        return
    if manifest[SEAL] != manifest_digest(manifest):
        raise UserError(where, f"{SEAL} does not match the manifest (it was changed or "
                        "damaged)", DAMAGED_FIX)


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON through a temporary name and a rename, so readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(obj, handle, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
