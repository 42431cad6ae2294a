"""A bundle reader written from artifacts/FORMAT.md alone: json, hashlib, numpy, safetensors.

It imports nothing of probeheat's, so a test that passes with it shows that FORMAT.md says
enough to read what probeheat writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path, PurePosixPath

import numpy as np
from safetensors import safe_open

ANCHOR = re.compile(r"^(last_q|first_answer|second_answer|exact_answer_before_first|"
                    r"exact_answer_first|exact_answer_last|exact_answer_after_last)"
                    r"(?:([+-])([1-9][0-9]*))?$")
FROM_END = re.compile(r"^-([1-9][0-9]*)$")


def manifest(folder: Path) -> dict:
    """manifest.json, with every listed file's size and SHA-256 checked."""
    data = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    assert data["format"] == "probeheat-bundle"
    major, minor = (int(x) for x in data["format_version"].split("."))
    assert major == 1
    for name, entry in data["files"].items():
        pure = PurePosixPath(name)
        assert not pure.is_absolute() and ".." not in pure.parts
        assert pure.suffix in (".json", ".safetensors")
        blob = (folder / pure).read_bytes()
        assert len(blob) == entry["size"], name
        assert hashlib.sha256(blob).hexdigest() == entry["sha256"], name
    return data


def tensors(path: Path, names=None) -> dict[str, np.ndarray]:
    with safe_open(str(path), framework="numpy") as f:
        if any(f.get_slice(k).get_dtype() == "BF16" for k in f.keys()):
            import ml_dtypes  # noqa: F401
        return {k: f.get_tensor(k) for k in (names or f.keys())}


class Run:
    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest = manifest(folder)
        assert self.manifest["kind"] == "run"
        self.meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        stems = sorted(n[: -len(".json")] for n in self.manifest["files"]
                       if n.startswith("shards/") and n.endswith(".json"))
        self.shards = stems
        records = []
        for stem in stems:
            records += json.loads((folder / f"{stem}.json").read_text())["records"]
        # Rows: row r is the example whose index is r; each index 0..n-1 exactly once.
        by_index = {r["index"]: r for r in records}
        assert sorted(by_index) == list(range(self.meta["n_examples"])) == \
            sorted(r["index"] for r in records)
        self.records = [by_index[i] for i in range(len(by_index))]

    def layer(self, k: int, site: str = "resid") -> tuple[np.ndarray, np.ndarray]:
        n, P, d = len(self.records), len(self.meta["positions"]), self.meta["hidden_size"]
        X = None
        mask = np.zeros((n, P), dtype=bool)
        for stem in self.shards:
            t = tensors(self.folder / f"{stem}.safetensors", [f"{site}.{k}", "mask", "index"])
            x = t[f"{site}.{k}"]
            assert x.shape[1:] == (P, d)
            X = np.zeros((n, P, d), dtype=x.dtype) if X is None else X
            X[t["index"]] = x
            mask[t["index"]] = t["mask"].astype(bool)
        return X, mask


def expected_index(name: str, prompt_len: int, gen_len: int, span) -> int | None:
    """FORMAT.md's position table, independently of probeheat's code (None = missing)."""
    T = prompt_len + gen_len
    if m := FROM_END.match(name):
        k = int(m.group(1))
        return T - k if k <= T else None
    m = ANCHOR.match(name)
    anchor, sign, k = m.group(1), m.group(2), int(m.group(3) or 0)
    base = {"last_q": prompt_len - 1,
            "first_answer": prompt_len if gen_len >= 1 else None,
            "second_answer": prompt_len + 1 if gen_len >= 2 else None}.get(anchor)
    if anchor.startswith("exact_answer"):
        if span is None:
            return None
        s, e = span
        base = {"exact_answer_before_first": prompt_len + s - 1,
                "exact_answer_first": prompt_len + s, "exact_answer_last": prompt_len + e,
                "exact_answer_after_last": min(prompt_len + e + 1, T - 1)}[anchor]
    if base is None or base < 0:
        return None
    index = base + (k if sign == "+" else -k)
    return index if 0 <= index < T else None


def check_record_positions(record: dict, positions: list[str]) -> None:
    present, missing = record["positions"], record["missing"]
    assert set(present) | set(missing) == set(positions) and not set(present) & set(missing)
    for name in positions:
        want = expected_index(name, record["prompt_len"], record["gen_len"],
                              record["exact_span"])
        assert present.get(name) == want, (record["index"], name, present.get(name), want)
        if want is None:
            assert isinstance(missing[name], str) and missing[name]


class Grid:
    def __init__(self, folder: Path):
        self.folder = folder
        self.manifest = manifest(folder)
        assert self.manifest["kind"] == "grid"
        self.meta = json.loads((folder / "grid.json").read_text(encoding="utf-8"))
        self.t = tensors(folder / "grid.safetensors")

    def run_folder(self) -> Path:
        """`run.path` is the run folder relative to the grid folder."""
        return (self.folder / self.meta["run"]["path"]).resolve()

    def auc_from_scores(self, s: int, i: int, j: int) -> float:
        rows = self.t["test_rows"][s]
        scores = self.t["scores"][s, i, j][: rows.size]
        keep = (rows >= 0) & ~np.isnan(scores)
        y = self.t["labels"][rows[keep]].astype(int)
        x = scores[keep].astype(np.float64)
        pos, neg = x[y == 1], x[y == 0]
        greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        return float(greater / (pos.size * neg.size))
