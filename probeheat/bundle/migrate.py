"""Upgrading manifests written by older probeheat versions.

Each step is one function that takes a manifest of major version N (as a dict, with the
bundle folder for context) and returns the equivalent manifest of version N+1. Steps run
in memory only: reading a bundle never rewrites it on disk.

Version 0 is the development layout used before the first release: the manifest said
``"probeheat_format": 0`` and ``"type"`` instead of ``format``/``format_version``/``kind``,
and listed ``"checksums": {path: sha256}`` without sizes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from ..errors import UserError
from .manifest import DAMAGED_FIX, FORMAT_NAME, FORMAT_VERSION, check_member, parse_version

CURRENT = parse_version(FORMAT_VERSION, "probeheat")
CURRENT_MAJOR = CURRENT[0]


def v0_to_v1(manifest: dict, root: Path) -> dict:
    where = str(root / "manifest.json")
    checksums = manifest.get("checksums")
    if not isinstance(checksums, dict) or "type" not in manifest:
        raise UserError(where, "version 0 manifest lacks 'type' or 'checksums'", DAMAGED_FIX)
    files = {}
    for name, digest in checksums.items():
        path = check_member(name, root, where)
        size = path.stat().st_size if path.is_file() else -1
        files[name] = {"sha256": digest, "size": size}
    return {
        "format": FORMAT_NAME,
        "format_version": "1.0",
        "kind": manifest["type"],
        "id": manifest.get("id", root.name),
        "created": manifest.get("created", ""),
        "writer": manifest.get("writer", "probeheat <0.1"),
        "files": files,
        "migrated_from": "0",
    }


# MIGRATIONS[n] upgrades major version n to n+1.
MIGRATIONS: dict[int, Callable[[dict, Path], dict]] = {0: v0_to_v1}


# --- minor versions: metadata steps (the manifest's layout does not change) --------------

def _relative(path: object, root: Path) -> object:
    if isinstance(path, str) and PurePosixPath(path).is_absolute():
        return PurePosixPath(os.path.relpath(path, Path(root).resolve())).as_posix()
    return path


def v1_0_to_v1_1(kind: str, meta: dict, root: Path) -> dict:
    """1.0 grids named their run by an absolute path; 1.1 by a path relative to the grid."""
    if kind not in ("grid", "generalization"):
        return meta
    meta = dict(meta)
    for key in ("run", "train_run", "test_run"):
        if isinstance(meta.get(key), dict):
            meta[key] = {**meta[key], "path": _relative(meta[key].get("path"), root)}
    for key in ("train_runs", "test_runs"):
        if isinstance(meta.get(key), list):
            meta[key] = [{**ref, "path": _relative(ref.get("path"), root)}
                         if isinstance(ref, dict) else ref for ref in meta[key]]
    return meta


def v1_1_to_v1_2(kind: str, meta: dict, root: Path) -> dict:
    """1.2 runs store baselines (token log-probabilities, p(True), categories) and the
    exact-answer rule; grids store baseline and control results. Older bundles say why
    they have none."""
    meta = dict(meta)
    absent = "written by format 1.1 or older, before probeheat stored baselines"
    if kind == "run":
        meta.setdefault("baselines", {"absent": absent, "category_column": None,
                                      "group_column": None})
        meta.setdefault("exact_answer_rule", "study")
    elif kind == "grid":
        meta.setdefault("baselines", {"absent": absent})
    return meta


def v1_2_to_v1_3(kind: str, meta: dict, root: Path) -> dict:
    """1.3 runs may hold sampled answers and error types (``samples``); grids name their
    target (``correct`` before 1.3)."""
    meta = dict(meta)
    if kind == "run":
        meta.setdefault("samples", None)
    elif kind == "grid":
        meta.setdefault("target", "correct")
    return meta


def v1_3_to_v1_4(kind: str, meta: dict, root: Path) -> dict:
    """1.4 runs may capture site "head" (described by ``heads``; null before 1.4); grids
    name their probe family (``probe.family``: every grid before 1.4 is ``logistic``)."""
    meta = dict(meta)
    if kind == "run":
        meta.setdefault("heads", None)
    elif kind == "grid" and isinstance(meta.get("probe"), dict):
        meta["probe"] = {"family": "logistic", **meta["probe"]}
    return meta


# MINOR_MIGRATIONS[(major, minor)] turns the metadata (run.json, grid.json, ...) of that
# version into the next minor version's, in memory.
MINOR_MIGRATIONS: dict[tuple[int, int], Callable[[str, dict, Path], dict]] = {
    (1, 0): v1_0_to_v1_1,
    (1, 1): v1_1_to_v1_2,
    (1, 2): v1_2_to_v1_3,
    (1, 3): v1_3_to_v1_4,
}


def upgrade_meta(kind: str, meta: dict, manifest: dict, root: Path) -> dict:
    """A bundle's metadata as the current minor version means it (newer minors pass as is)."""
    version = parse_version(manifest.get("format_version", "1.0"), str(root / "manifest.json"))
    while version < CURRENT and version[0] == CURRENT_MAJOR:
        step = MINOR_MIGRATIONS.get(version)
        if step is not None:
            meta = step(kind, meta, root)
        version = (version[0], version[1] + 1)
    return meta


def manifest_major(manifest: dict, where: str) -> int:
    if "probeheat_format" in manifest and "format" not in manifest:
        return int(manifest["probeheat_format"])
    if manifest.get("format") != FORMAT_NAME:
        raise UserError(where, f"format is {manifest.get('format')!r}, not {FORMAT_NAME!r}",
                        "this folder was not written by probeheat")
    return parse_version(manifest.get("format_version"), where)[0]


def upgrade(manifest: dict, root: Path) -> dict:
    """Return the manifest in the current major version, or refuse a newer one."""
    where = str(root / "manifest.json")
    major = manifest_major(manifest, where)
    if major > CURRENT_MAJOR:
        raise UserError(where, f"format_version {manifest.get('format_version')} is newer than this "
                        f"probeheat reads ({CURRENT_MAJOR}.x)", "upgrade probeheat: pip install -U probeheat")
    while major < CURRENT_MAJOR:
        if major not in MIGRATIONS:
            raise UserError(where, f"no migration from format version {major}", "upgrade probeheat")
        manifest = MIGRATIONS[major](manifest, root)
        major += 1
    return manifest
