"""Run bundles: graded answers plus hidden states at named positions for every layer.

Layout (see artifacts/FORMAT.md)::

    run.json                              run metadata
    shards/shard-rRRR-NNNNN.safetensors   "<site>.<layer>" [n, P, d], "mask" [n, P] u8, "index" [n] i64
    shards/shard-rRRR-NNNNN.json          {"records": [...]} for the same n examples, same order

A run grows shard by shard inside ``OUT.partial/``; each shard appears by rename, tensors
first and records last, so a shard counts as written only when its records file exists.
``--resume`` continues from the shards present. ``finalize`` writes the manifest and renames
``OUT.partial`` to ``OUT``.
"""

from __future__ import annotations

import re
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import (
    Bundle,
    check_destination,
    get_tensor,
    new_id,
    open_tensors,
    publish,
    read_json,
    save_tensors,
)
from .manifest import DAMAGED_FIX, write_json_atomic
from .records import Record, check_complete, check_records, error_labels

RUN_META = "run.json"
SHARD_DIR = "shards"
SHARD_RE = re.compile(r"^shard-r(\d{3})-(\d{5})\.json$")


def tensor_name(site: str, layer: int) -> str:
    return f"{site}.{layer}"


class RunBundle(Bundle):
    kind = "run"
    meta_file = RUN_META

    @property
    def positions(self) -> list[str]:
        return list(self.require("positions"))

    @property
    def layers(self) -> list[int]:
        return list(self.require("layers"))

    @property
    def sites(self) -> dict[str, list[int]]:
        """Site name -> the layer indices captured there."""
        return {k: list(v) for k, v in self.require("sites").items()}

    @property
    def hidden_size(self) -> int:
        return int(self.require("hidden_size"))

    @property
    def dtype(self) -> str:
        return str(self.require("dtype"))

    @property
    def n_examples(self) -> int:
        return int(self.require("n_examples"))

    @property
    def model_id(self) -> str | None:
        """``model.model_id``: the model as the user named it (built-in name, path, hub id)."""
        model = self.meta.get("model")
        return model.get("model_id") if isinstance(model, dict) else None

    @cached_property
    def shards(self) -> list[str]:
        """Shard stems (``shards/shard-r000-00000``) in file-name order."""
        names = sorted(n for n in self.manifest["files"] if n.startswith(f"{SHARD_DIR}/"))
        return [n[: -len(".json")] for n in names if SHARD_RE.match(n.split("/")[-1])]

    def _shard_records(self, stem: str) -> list[Record]:
        where = str(self.path / f"{stem}.json")
        data = read_json(self.member(f"{stem}.json"))
        if not isinstance(data, dict) or "records" not in data:
            raise UserError(where, "no 'records' list", DAMAGED_FIX)
        return check_records(data["records"], where)

    @cached_property
    def _order(self) -> tuple[list[Record], np.ndarray]:
        records = [r for stem in self.shards for r in self._shard_records(stem)]
        check_complete(records, self.positions, str(self.path))
        indices = np.array([r["index"] for r in records], dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        return [records[i] for i in order], order

    def records(self) -> list[Record]:
        """Per-example records in row order: row r is the record whose ``index`` is r."""
        return self._order[0]

    def labels(self) -> np.ndarray:
        """1 where the model's answer was wrong, 0 where it was right, in records() order."""
        return error_labels(self.records())

    def read_layer(self, layer: int, site: str = "resid", *, as_float32: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states [n, P, d] and the position mask [n, P] of one layer.

        Reads only that layer's tensor from each shard (safetensors memory-maps the rest).
        Values come back as float32 unless ``as_float32=False`` (then in the stored dtype).
        """
        if site not in self.sites or layer not in self.sites[site]:
            raise UserError(str(self.path), f"run has no {site} layer {layer}",
                            f"layers here: {self.sites.get(site, [])}")
        xs, masks = [], []
        name = tensor_name(site, layer)
        for stem in self.shards:
            path = self.member(f"{stem}.safetensors")
            with open_tensors(path) as f:
                x = get_tensor(f, name, path)
                xs.append(x.astype(np.float32) if as_float32 else x)
                masks.append(get_tensor(f, "mask", path).astype(bool))
        order = self._order[1]
        return np.concatenate(xs)[order], np.concatenate(masks)[order]


class RunWriter:
    """Grows a run bundle shard by shard; safe to kill at any moment and resume.

    Each rank of a data-parallel job owns its own shard names (``shard-rRRR-*``); rank 0
    finalises. ``fingerprint`` identifies the run's inputs so that ``resume`` refuses to mix
    two different runs in one folder.
    """

    def __init__(self, out: Path, meta: dict, *, resume: bool = False, overwrite: bool = False,
                 rank: int = 0):
        self.out = Path(out)
        self.partial = partial_path(self.out)
        self.rank = rank
        self.overwrite = overwrite
        self.meta = dict(meta)
        if "fingerprint" not in self.meta:
            raise ValueError("run metadata needs a 'fingerprint'")
        if rank == 0:
            self._prepare(resume, overwrite)

    def _prepare(self, resume: bool, overwrite: bool) -> None:
        if self.out.exists() and not overwrite and resume \
                and _fingerprint_of(self.out / RUN_META) == self.meta["fingerprint"]:
            raise RunAlreadyComplete(self.out)
        check_run_out(self.out, resume=False, overwrite=overwrite, finished_only=True)
        if self.partial.exists():
            same = _fingerprint_of(self.partial / RUN_META) == self.meta["fingerprint"]
            if overwrite:
                shutil.rmtree(self.partial)
            elif not resume:
                check_run_out(self.out, resume=False, overwrite=False)
            elif not same:
                raise UserError(str(self.partial), "holds an unfinished run with different inputs "
                                "(model, dataset, positions or settings)",
                                "pass --overwrite to start again or choose another --out")
            else:
                self._sweep_temporaries()
                return
        (self.partial / SHARD_DIR).mkdir(parents=True)
        self.meta.setdefault("id", new_id("run"))
        write_json_atomic(self.partial / RUN_META, self.meta)

    def _sweep_temporaries(self) -> None:
        for path in (self.partial / SHARD_DIR).glob(".*.tmp-*"):
            path.unlink()
        for path in (self.partial / SHARD_DIR).glob("*.safetensors"):
            if not path.with_suffix(".json").exists():
                path.unlink()  # a shard killed between its two renames: redo its examples

    def _shard_files(self) -> list[Path]:
        return sorted(p for p in (self.partial / SHARD_DIR).glob("shard-r*.json") if SHARD_RE.match(p.name))

    def done_records(self) -> dict[int, bool]:
        """{dataset index: correct} of the examples any rank has written (a resume skips them)."""
        done: dict[int, bool] = {}
        for path in self._shard_files():
            for record in check_records(read_json(path).get("records"), str(path)):
                done[record["index"]] = record["correct"]
        return done

    def done_indices(self) -> set[int]:
        """Dataset indices already written by any rank (what a resumed run skips)."""
        return set(self.done_records())

    def add_shard(self, records: list[dict], tensors: dict[str, np.ndarray], mask: np.ndarray) -> Path:
        """Write one shard: ``tensors`` maps "<site>.<layer>" to [n, P, d]; mask is [n, P]."""
        n = len(records)
        index = np.array([int(r["index"]) for r in records], dtype=np.int64)
        if mask.shape[0] != n or any(t.shape[0] != n for t in tensors.values()):
            raise ValueError("records, mask and tensors disagree on the number of examples")
        seq = sum(1 for p in self._shard_files() if p.name.startswith(f"shard-r{self.rank:03d}-"))
        stem = self.partial / SHARD_DIR / f"shard-r{self.rank:03d}-{seq:05d}"
        save_tensors(stem.with_suffix(".safetensors"),
                     {**tensors, "mask": mask.astype(np.uint8), "index": index})
        write_json_atomic(stem.with_suffix(".json"), {"records": records})
        return stem

    def finalize(self, extra_meta: dict | None = None) -> Path:
        """Merge the final metadata, write the manifest and move the bundle into place."""
        meta = read_json(self.partial / RUN_META)
        records = [r for p in self._shard_files() for r in read_json(p)["records"]]
        indices = sorted(int(r["index"]) for r in records)
        if len(set(indices)) != len(indices):
            raise UserError(str(self.partial), "an example was written twice", DAMAGED_FIX)
        meta.update(extra_meta or {})
        meta["n_examples"] = len(records)
        meta["n_correct"] = sum(1 for r in records if r["correct"])
        write_json_atomic(self.partial / RUN_META, meta)
        publish(self.partial, self.out, "run", meta["id"], self.overwrite)
        return self.out


class RunAlreadyComplete(Exception):
    """``--resume`` found the run already finished: nothing to do."""

    def __init__(self, path: Path):
        super().__init__(f"{path}: run already complete")
        self.path = path


def _fingerprint_of(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        meta = read_json(path)
    except UserError:
        return None
    return meta.get("fingerprint") if isinstance(meta, dict) else None


def partial_path(out: Path) -> Path:
    """Where a run grows until it is finished: ``OUT.partial`` beside ``OUT``."""
    return Path(out).with_name(Path(out).name + ".partial")


def check_run_out(out: Path, *, resume: bool, overwrite: bool,
                  finished_only: bool = False) -> None:
    """Refuse an --out that holds a finished bundle or an unfinished run, unless told.

    Checked by `run` before anything heavy loads and again by the writer.
    """
    out = Path(out)
    if out.exists() and not (resume or overwrite):
        check_destination(out, overwrite=False)
    if not finished_only and partial_path(out).exists() and not (resume or overwrite):
        raise UserError(str(partial_path(out)), "holds an unfinished run",
                        "pass --resume to continue it, or --overwrite to start again")


