"""`probeheat verify`: checksums, sizes, stray files, and tensor shapes against the metadata.

Returns problems as lines ("FILE: problem"); an empty list means the bundle is sound.
Only JSON and safetensors headers are ever parsed; nothing is executed or unpickled.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from .base import Bundle, open_tensors
from .manifest import MANIFEST, sha256_file

SAFETENSORS_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def verify_bundle(path: Path) -> list[str]:
    from . import open_bundle

    try:
        bundle = open_bundle(path)
    except UserError as exc:
        return [exc.line()]
    problems = check_files(bundle)
    if problems:  # shapes of damaged files would only repeat the same news
        return problems
    checker = {"run": check_run, "grid": check_grid, "generalization": check_generalization}
    try:
        return checker[bundle.kind](bundle)
    except UserError as exc:
        return [exc.line()]


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


def _shape(f, name: str) -> tuple[list[int], str] | None:
    if name not in f.keys():
        return None
    piece = f.get_slice(name)
    return list(piece.get_shape()), piece.get_dtype()


def _expect(problems: list[str], path: Path, f, name: str, shape: list[int], dtype: str | None = None):
    got = _shape(f, name)
    if got is None:
        problems.append(f"{path}: tensor {name!r} is missing")
    elif got[0] != shape:
        problems.append(f"{path}: tensor {name!r} has shape {got[0]}, metadata says {shape}")
    elif dtype is not None and got[1] != dtype:
        problems.append(f"{path}: tensor {name!r} has dtype {got[1]}, metadata says {dtype}")


def check_run(run) -> list[str]:
    problems: list[str] = []
    n_pos, d = len(run.positions), run.hidden_size
    dtype = SAFETENSORS_DTYPES.get(run.dtype)
    seen: set[int] = set()
    total = 0
    for stem in run.shards:
        path = run.member(f"{stem}.safetensors")
        records = run._shard_records(stem)
        n = len(records)
        total += n
        with open_tensors(path) as f:
            for site, layers in run.sites.items():
                for layer in layers:
                    _expect(problems, path, f, f"{site}.{layer}", [n, n_pos, d], dtype)
            _expect(problems, path, f, "mask", [n, n_pos])
            _expect(problems, path, f, "index", [n])
        for record in records:
            index = int(record["index"])
            if index in seen:
                problems.append(f"{path}: example index {index} appears twice")
            seen.add(index)
    if total != run.n_examples:
        problems.append(f"{run.path / 'run.json'}: n_examples is {run.n_examples} but shards hold {total}")
    return problems


def check_grid(grid) -> list[str]:
    problems: list[str] = []
    n_layers, n_pos = len(grid.layers), len(grid.positions)
    path = grid.member("grid.safetensors")
    with open_tensors(path) as f:
        for name in grid.metrics:
            _expect(problems, path, f, name, [n_layers, n_pos])
            for suffix in ("_lo", "_hi", "_std"):
                if f"{name}{suffix}" in f.keys():
                    _expect(problems, path, f, f"{name}{suffix}", [n_layers, n_pos])
        for name in ("n_train", "n_test", "n_test_pos"):
            if name in f.keys():
                _expect(problems, path, f, name, [n_layers, n_pos])
        if "scores" in f.keys() and "test_rows" in f.keys():
            seeds, k = _shape(f, "test_rows")[0]
            _expect(problems, path, f, "scores", [seeds, n_layers, n_pos, k])
    return problems


def check_generalization(bundle) -> list[str]:
    problems: list[str] = []
    path = bundle.member("generalization.safetensors")
    with open_tensors(path) as f:
        _expect(problems, path, f, "auc", [len(bundle.train_names), len(bundle.test_names)])
    return problems
