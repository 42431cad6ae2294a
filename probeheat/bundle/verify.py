"""`probeheat verify`: checksums, sizes, stray files, then everything a reader checks.

Returns problems as lines ("FILE: problem"); an empty list means the bundle is sound.
Only JSON and safetensors headers and tensors are parsed; nothing is executed or unpickled.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import Bundle, checksums
from .manifest import MANIFEST, sha256_file


def verify_bundle(path: Path) -> list[str]:
    from . import open_bundle

    try:
        bundle = open_bundle(path)
    except UserError as exc:
        return [exc.line()]
    problems = check_files(bundle)
    if any("not listed" not in p for p in problems):
        return problems  # what is inside damaged files would only repeat the same news
    try:
        with checksums(False):  # every listed file was just hashed
            bundle.meta  # noqa: B018  (reading it checks it)
            bundle.check_all()
    except UserError as exc:
        problems.append(exc.line())
    return problems


def check_files(bundle: Bundle) -> list[str]:
    root = bundle.path
    problems = []
    listed = bundle.manifest["files"]
    for name, entry in sorted(listed.items()):
        path = root / name
        if not path.is_file():
            problems.append(f"{path}: listed in the manifest but missing")
            continue
        size = path.stat().st_size
        if entry.get("size") not in (None, -1) and size != entry["size"]:
            problems.append(f"{path}: size {size} bytes, manifest says {entry['size']} (truncated or extended)")
        elif sha256_file(path) != entry["sha256"]:
            problems.append(f"{path}: sha256 does not match the manifest (file changed or corrupted)")
    for path in sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()):
        name = path.relative_to(root).as_posix()
        if name != MANIFEST and name not in listed:
            problems.append(f"{path}: not listed in the manifest (never loaded; remove it)")
    return problems
