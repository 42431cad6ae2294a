"""Run bundles: graded answers plus hidden states at named positions for every layer.

Layout (see artifacts/FORMAT.md)::

    run.json                              run metadata
    shards/shard-rRRR-NNNNN.safetensors   "<site>.<layer>" [n, P, d], "mask" [n, P] u8, "index" [n] i64
    shards/shard-rRRR-NNNNN.json          {"records": [...]} for the same n examples, same order

A run grows shard by shard inside ``OUT.partial/``, locked by its writer (``lock.py``);
each shard appears by rename, tensors first and records last, so a shard counts as written
only when its records file exists. ``--resume`` sweeps what a killed writer left (temporary
files, tensors without records) and continues from the shards present. ``finalize``
writes the manifest, listing exactly run.json and the shard pairs, and renames
``OUT.partial`` to ``OUT``.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from ..errors import UserError
from .base import (
    SAFETENSORS_DTYPES,
    Bundle,
    check_destination,
    expect_tensor,
    get_tensor,
    new_id,
    open_tensors,
    publish,
    read_json,
    save_tensors,
)
from .faults import fault_point
from .lock import LOCK_NAME, PartialLock, clear_stale
from .manifest import DAMAGED_FIX, write_json_atomic
from .records import Record, check_complete, check_records, error_labels
from .schema import check_run_meta

RUN_META = "run.json"
SHARD_DIR = "shards"
SHARD_RE = re.compile(r"^shard-r(\d{3})-(\d{5})\.json$")


def tensor_name(site: str, layer: int) -> str:
    return f"{site}.{layer}"


@dataclass(frozen=True)
class Shard:
    """A shard whose header, index and mask were checked against its records."""

    stem: str
    path: Path
    records: list[Record]
    index: np.ndarray
    mask: np.ndarray


class RunBundle(Bundle):
    kind = "run"
    meta_file = RUN_META

    def check_meta(self, meta: dict, where: str) -> None:
        check_run_meta(meta, where)

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
    def heads(self) -> dict | None:
        """Site "head": ``n_heads``, ``head_dim`` and the module hooked; None without it."""
        value = self.meta.get("heads")
        return dict(value) if value else None

    def width(self, site: str) -> int:
        """Columns of a site's tensors: hidden_size, or n_heads * head_dim for "head"."""
        if site == "head" and self.heads:
            return int(self.heads["n_heads"]) * int(self.heads["head_dim"])
        return self.hidden_size

    @property
    def dtype(self) -> str:
        return str(self.require("dtype"))

    @property
    def n_examples(self) -> int:
        return int(self.require("n_examples"))

    @property
    def samples(self) -> dict | None:
        """``run --samples K``: k, layers, positions and how they were drawn; else None."""
        value = self.meta.get("samples")
        return dict(value) if value else None

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
        cache = self.__dict__.setdefault("_records_of", {})
        if stem not in cache:
            cache[stem] = self._read_shard_records(stem)
        return cache[stem]

    def _read_shard_records(self, stem: str) -> list[Record]:
        where = str(self.path / f"{stem}.json")
        data = read_json(self.member(f"{stem}.json"))
        if not isinstance(data, dict) or "records" not in data:
            raise UserError(where, "no 'records' list", DAMAGED_FIX)
        return check_records(data["records"], where)

    @cached_property
    def checked_shards(self) -> list[Shard]:
        """Every shard, its tensors' dtypes and shapes, index and mask checked once."""
        return [self._check_shard(stem) for stem in self.shards]

    def _check_header(self, f, path: Path, n: int) -> None:
        P, d = len(self.positions), self.hidden_size
        for site, layers in self.sites.items():
            for layer in layers:
                expect_tensor(f, tensor_name(site, layer), path, SAFETENSORS_DTYPES[self.dtype],
                              [n, P, self.width(site)])
        expect_tensor(f, "index", path, "I64", [n])
        expect_tensor(f, "mask", path, "U8", [n, P])
        if self.samples:
            k, Ps = self.samples["k"], len(self.samples["positions"])
            for layer in self.samples["layers"]:
                expect_tensor(f, sample_tensor_name(layer), path,
                              SAFETENSORS_DTYPES[self.dtype], [n, k, Ps, d])
            expect_tensor(f, "samples.mask", path, "U8", [n, k, Ps])

    def check_headers(self) -> None:
        """Every shard's tensor header against the metadata, without hashing the data (what
        `inspect` checks: it reads no activation)."""
        for stem in self.shards:
            path = self.member(f"{stem}.safetensors", checksum=False)
            with open_tensors(path) as f:
                self._check_header(f, path, len(self._shard_records(stem)))

    def _check_shard(self, stem: str) -> Shard:
        records = self._shard_records(stem)
        path = self.member(f"{stem}.safetensors")
        n, P = len(records), len(self.positions)
        with open_tensors(path) as f:
            self._check_header(f, path, n)
            index = get_tensor(f, "index", path, "I64", [n])
            mask = get_tensor(f, "mask", path, "U8", [n, P]).astype(bool)
        if index.tolist() != [r["index"] for r in records]:
            raise UserError(str(path), "its index tensor and its records disagree", DAMAGED_FIX)
        for j, record in enumerate(records):
            if "positions" in record and [p in record["positions"] for p in self.positions] \
                    != mask[j].tolist():
                raise UserError(str(path), f"mask of example {record['index']} disagrees with "
                                "its record's positions", DAMAGED_FIX)
        return Shard(stem, path, records, index, mask)

    @cached_property
    def _order(self) -> tuple[list[Record], np.ndarray]:
        """Records in row order, and the order that puts shard rows there (JSON only)."""
        records = [r for stem in self.shards for r in self._shard_records(stem)]
        check_complete(records, self.positions, str(self.path))
        where = str(self.path / RUN_META)
        if len(records) != self.n_examples:
            raise UserError(where, f"n_examples is {self.n_examples} but the shards hold "
                            f"{len(records)}", DAMAGED_FIX)
        if sum(r["correct"] for r in records) != self.meta["n_correct"]:
            raise UserError(where, "n_correct disagrees with the records", DAMAGED_FIX)
        indices = np.array([r["index"] for r in records], dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        return [records[i] for i in order], order

    def records(self) -> list[Record]:
        """Per-example records in row order: row r is the record whose ``index`` is r."""
        return self._order[0]

    def check_all(self) -> None:
        """Check every shard and record against the metadata (verify)."""
        self.records()
        self.checked_shards  # noqa: B018  (tensor headers, index and mask of every shard)

    def labels(self) -> np.ndarray:
        """1 where the model's answer was wrong, 0 where it was right, in records() order."""
        return error_labels(self.records())

    def read_layer(self, layer: int, site: str = "resid", *, as_float32: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states [n, P, d] and the position mask [n, P] of one layer (site "head":
        [n, P, n_heads * head_dim], head h in columns h * head_dim onwards).

        Reads only that layer's tensor from each shard (safetensors memory-maps the rest).
        Values come back as float32 unless ``as_float32=False`` (then in the stored dtype).
        """
        if site not in self.sites or layer not in self.sites[site]:
            raise UserError(str(self.path), f"run has no {site} layer {layer}",
                            f"layers here: {self.sites.get(site, [])}")
        xs = []
        name = tensor_name(site, layer)
        order = self._order[1]
        for shard in self.checked_shards:  # every shard checked before any value is read
            with open_tensors(shard.path) as f:
                x = get_tensor(f, name, shard.path)
                xs.append(x.astype(np.float32) if as_float32 else x)
        masks = [shard.mask for shard in self.checked_shards]
        return np.concatenate(xs)[order], np.concatenate(masks)[order]


    def read_samples(self, layer: int, *, as_float32: bool = True
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Hidden states of the sampled answers [n, K, Ps, d] at one resid layer, and their
        position mask [n, K, Ps] (``samples.positions``), in records() order."""
        spec = self.samples
        if spec is None:
            raise UserError(str(self.path), "run has no sampled answers",
                            "make one with probeheat run --samples K")
        if layer not in spec["layers"]:
            raise UserError(str(self.path), f"samples have no layer {layer}",
                            f"sample layers here: {spec['layers']}")
        xs, masks = [], []
        order = self._order[1]
        for shard in self.checked_shards:
            with open_tensors(shard.path) as f:
                x = get_tensor(f, sample_tensor_name(layer), shard.path)
                xs.append(x.astype(np.float32) if as_float32 else x)
                masks.append(get_tensor(f, "samples.mask", shard.path).astype(bool))
        return np.concatenate(xs)[order], np.concatenate(masks)[order]


def sample_tensor_name(layer: int) -> str:
    return f"samples.resid.{layer}"


class RunWriter:
    """Grows a run bundle shard by shard; safe to kill at any moment and resume.

    Each rank of a data-parallel job owns its own shard names (``shard-rRRR-*``); rank 0
    holds the partial's lock and finalises. ``fingerprint`` identifies the run's inputs so
    that ``resume`` refuses to mix two different runs in one folder.
    """

    def __init__(self, out: Path, meta: dict, *, resume: bool = False, overwrite: bool = False,
                 rank: int = 0):
        self.out = Path(out)
        self.partial = partial_path(self.out)
        self.rank = rank
        self.overwrite = overwrite
        self.meta = dict(meta)
        self.lock: PartialLock | None = None
        if "fingerprint" not in self.meta:
            raise ValueError("run metadata needs a 'fingerprint'")
        if rank == 0:
            self._prepare(resume, overwrite)

    def _prepare(self, resume: bool, overwrite: bool) -> None:
        if self.out.exists() and not overwrite and resume \
                and _fingerprint_of(self.out / RUN_META) == self.meta["fingerprint"]:
            clear_stale(self.out)
            raise RunAlreadyComplete(self.out)
        check_run_out(self.out, resume=False, overwrite=overwrite, finished_only=True)
        if self.partial.exists():
            if not (resume or overwrite):
                check_run_out(self.out, resume=False, overwrite=False)
            if not overwrite and _fingerprint_of(self.partial / RUN_META) \
                    != self.meta["fingerprint"]:
                raise UserError(str(self.partial), "holds an unfinished run with different inputs "
                                "(model, dataset, positions or settings)",
                                "pass --overwrite to start again or choose another --out")
            self.lock = PartialLock(self.partial)  # refused while another writer lives
            if not overwrite:
                self._sweep_temporaries()
                return
            shutil.rmtree(self.partial)
            self.lock.release(unlink=False)  # its file went with the folder
        self._create()

    def _create(self) -> None:
        try:
            self.partial.mkdir(parents=True)
        except FileExistsError:
            raise UserError(str(self.partial), "was just created by another writer",
                            "let that run finish, or pass --resume once it stops") from None
        self.lock = PartialLock(self.partial)
        (self.partial / SHARD_DIR).mkdir()
        self.meta.setdefault("id", new_id("run"))
        write_json_atomic(self.partial / RUN_META, self.meta)

    def _sweep_temporaries(self) -> None:
        """Remove what a killed writer leaves: hidden temporaries (ours and safetensors'
        ``.tmpXXXXXX``) and tensors whose records were never written."""
        shards = self.partial / SHARD_DIR
        shards.mkdir(exist_ok=True)
        for folder in (self.partial, shards):
            for path in folder.glob(".*"):
                if path.name != LOCK_NAME and path.is_file():
                    path.unlink()
        for path in shards.glob("*.safetensors"):
            if not path.with_suffix(".json").exists():
                path.unlink()  # a shard killed between its two renames: redo its examples
        (self.partial / "manifest.json").unlink(missing_ok=True)  # killed while finalizing

    def _shard_files(self) -> list[Path]:
        return sorted(p for p in (self.partial / SHARD_DIR).glob("shard-r*.json")
                      if SHARD_RE.match(p.name))

    def done_records(self) -> dict[int, bool]:
        """{dataset index: correct} of the examples any rank has written (a resume skips them)."""
        done: dict[int, bool] = {}
        for path in self._shard_files():
            data = read_json(path)
            for record in check_records(data.get("records") if isinstance(data, dict) else None,
                                        str(path)):
                if record["index"] in done:
                    raise UserError(str(path), f"example {record['index']} was written twice",
                                    "remove the later of the two shards holding it, then "
                                    "--resume")
                done[record["index"]] = record["correct"]
        return done

    def done_indices(self) -> set[int]:
        """Dataset indices already written by any rank (what a resumed run skips)."""
        return set(self.done_records())

    def add_shard(self, records: list[dict], tensors: dict[str, np.ndarray], mask: np.ndarray) -> Path:
        """Write one shard: ``tensors`` maps "<site>.<layer>" to [n, P, d]; mask is [n, P].

        Raises OSError (a full disk, say) with nothing of the shard left behind.
        """
        n = len(records)
        index = np.array([int(r["index"]) for r in records], dtype=np.int64)
        if mask.shape[0] != n or any(t.shape[0] != n for t in tensors.values()):
            raise ValueError("records, mask and tensors disagree on the number of examples")
        seq = sum(1 for p in self._shard_files() if p.name.startswith(f"shard-r{self.rank:03d}-"))
        stem = self.partial / SHARD_DIR / f"shard-r{self.rank:03d}-{seq:05d}"
        fault_point("shard-start")
        fault_point("shard-temp", stem.parent)
        save_tensors(stem.with_suffix(".safetensors"),
                     {**tensors, "mask": mask.astype(np.uint8), "index": index})
        try:
            fault_point("shard-tensors")
            write_json_atomic(stem.with_suffix(".json"), {"records": records})
        except OSError:
            stem.with_suffix(".safetensors").unlink(missing_ok=True)
            raise
        fault_point("shard-done")
        return stem

    def finalize(self, extra_meta: dict | None = None) -> Path:
        """Merge the final metadata, write the manifest and move the bundle into place."""
        self._sweep_temporaries()
        done = self.done_records()
        meta = read_json(self.partial / RUN_META)
        meta.update(extra_meta or {})
        meta["n_examples"] = len(done)
        meta["n_correct"] = sum(done.values())
        write_json_atomic(self.partial / RUN_META, meta)
        fault_point("finalize-meta")
        names = [RUN_META] + [f"{SHARD_DIR}/{p.stem}{suffix}" for p in self._shard_files()
                              for suffix in (".safetensors", ".json")]
        publish(self.partial, self.out, "run", meta["id"], self.overwrite, names=names)
        fault_point("finalize-renamed")
        if self.lock is not None:
            self.lock.release(self.out)
        return self.out

    def close(self) -> None:
        """Release the lock of an unfinished run (the partial stays, for --resume)."""
        if self.lock is not None:
            self.lock.release()


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


