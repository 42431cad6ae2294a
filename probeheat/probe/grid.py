"""Run bundle -> grid bundle: one probe per (layer, position), streamed a layer at a time.

The probe predicts ERROR, as in the study: label 1 = the model's answer was incorrect, and a
cell's score is the probe's log-odds that the answer is wrong. Examples (not cells) are
split, stratified by label, once per seed; every cell of a seed uses the same split, so
cells are comparable and the example ids of each split are stored in grid.json.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import __version__
from ..bundle import open_run, write_grid
from ..bundle.base import check_destination, check_not_inside
from ..bundle.grid import best_index
from ..distributed import Dist
from ..errors import UserError
from ..progress import Progress
from ..selection import select_layers, select_positions
from .cells import fit_layer
from .cellstats import CAL_KEYS, CAL_METRICS, calibration_meta, probabilities_by
from .heads import fit_head_layer, head_columns, heads_meta
from .settings import ProbeSettings, probe_settings
from .splits import group_split, question_groups
from .targets import expand_target, target_labels, target_meta, type_of

METRICS = ["auc", "accuracy"]
COUNTS = ("n_train", "n_test", "n_test_pos")


def progress_mode(progress: bool | str) -> str:
    """`progress=True/False` (library callers) or a mode name (the CLI's --log-format)."""
    if progress is True:
        return "auto"
    return "quiet" if progress is False else str(progress)


# --- selecting what to probe ---------------------------------------------------------------

def site_layers(run, site: str) -> list[int]:
    available = run.sites.get(site)
    if available is None:
        here = f"sites here: {', '.join(run.sites)}"
        fix = (f"capture it with probeheat run --sites resid,head; {here}" if site == "head"
               else f"{here}; the sites are resid, mlp, attn and head")
        raise UserError("--site", f"run {run.path} has no site {site!r}", fix)
    return list(available)


def choose_layers(run, layers, site: str) -> list[int]:
    return select_layers(layers, site_layers(run, site), where="--layers",
                         source=f"run {run.path}: no {site} layer by that number")


def choose_positions(run, positions) -> tuple[list[str], list[int]]:
    names = select_positions(positions, run.positions, where="--positions",
                             source=f"run {run.path}'s positions")
    return names, [run.positions.index(p) for p in names]


def labels_of(run) -> np.ndarray:
    """Error labels (1 = wrong) of a run; refuses a run with only one kind of answer."""
    return target_labels(run, "correct")


# --- the grid -----------------------------------------------------------------------------

@dataclass
class GridResult:
    """Everything a grid bundle holds, in memory (arrays are [S, L, P, ...])."""

    layers: list[int]
    positions: list[str]
    labels: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]
    auc: np.ndarray
    auc_lo: np.ndarray
    auc_hi: np.ndarray
    accuracy: np.ndarray
    counts: dict[str, np.ndarray]
    scores: np.ndarray
    reasons: dict[tuple[int, str], str] = field(default_factory=dict)
    not_converged: list[dict] = field(default_factory=list)
    columns: list[int] = field(default_factory=list)  # each position's column in the run
    n_groups: int | None = None  # groups the split kept together (None: one row each)
    cal: dict[str, np.ndarray] = field(default_factory=dict)  # CAL_KEYS -> [S, L, P]
    reliability: np.ndarray | None = None  # [S, L, P, 3, bins]
    heads: dict | None = None  # head grids: grid.json's "heads" (probe/heads.py)

    @classmethod
    def empty(cls, layers, positions, labels, splits, k: int,
              calibration: bool = False) -> GridResult:
        S, L, P = len(splits), len(layers), len(positions)
        out = cls(layers, positions, labels, splits,
                  *(np.full((S, L, P), np.nan) for _ in range(4)),
                  {name: np.zeros((S, L, P), np.int64) for name in COUNTS},
                  np.full((S, L, P, k), np.nan, dtype=np.float32))
        if calibration:
            from .calibration import BINS

            out.cal = {key: np.full((S, L, P), np.nan) for key in CAL_KEYS}
            out.reliability = np.full((S, L, P, 3, BINS), np.nan)
        return out

    def mean_auc(self) -> np.ndarray:
        return nanmean(self.auc)

    def best_cell(self) -> tuple[int, int] | None:
        return best_index(self.mean_auc())

    def store(self, s: int, i: int, fit, seed: int | None) -> None:
        """Put one layer's fit on split s into row i."""
        self.auc[s, i], self.auc_lo[s, i], self.auc_hi[s, i] = fit.auc, fit.auc_lo, fit.auc_hi
        self.accuracy[s, i] = fit.accuracy
        for name in self.counts:
            self.counts[name][s, i] = getattr(fit, name)
        self.scores[s, i, :, :fit.scores.shape[1]] = fit.scores.astype(np.float32)
        for key, values in fit.cal.items():
            if key in self.cal:
                self.cal[key][s, i] = values
        if self.reliability is not None and fit.reliability is not None:
            self.reliability[s, i] = fit.reliability
        layer = self.layers[i]
        for p, reason in fit.reasons.items():
            self.reasons.setdefault((layer, self.positions[p]), reason)
        for p in np.flatnonzero(~fit.converged & np.isfinite(fit.auc)):
            self.not_converged.append({"layer": layer, "position": self.positions[p],
                                       "seed": seed})


def nanmean(a: np.ndarray) -> np.ndarray:
    """Mean over axis 0 ignoring NaN; NaN where every entry is NaN (no warnings)."""
    fitted = (~np.isnan(a)).sum(0)
    total = np.where(np.isnan(a), 0.0, a).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fitted > 0, total / np.maximum(fitted, 1), np.nan)


def nanstd(a: np.ndarray) -> np.ndarray:
    mean = nanmean(a)
    fitted = (~np.isnan(a)).sum(0)
    sq = np.where(np.isnan(a), 0.0, (a - mean) ** 2).sum(0)
    return np.where(fitted > 0, np.sqrt(sq / np.maximum(fitted, 1)), np.nan)


def probe_run(run, *, layers=None, positions=None, settings: ProbeSettings | None = None,
              progress: bool | str = True, label: str = "probe") -> GridResult | None:
    """Fit every (layer, position) probe of an open run bundle, for each seed's split.

    Under torchrun (WORLD_SIZE > 1) rank r fits layers r, r + world, ... and rank 0 gathers
    them: the result is the same as one process's; other ranks get None."""
    settings = settings or ProbeSettings()
    layer_list = choose_layers(run, layers, settings.site)
    names, columns = choose_positions(run, positions)
    y = target_labels(run, settings.target)
    groups = question_groups(run.records())
    splits = [group_split(y, groups, settings.test_fraction, seed) for seed in settings.seeds]
    heads = heads_meta(run, names) if settings.site == "head" else None
    out = GridResult.empty(layer_list, head_columns(names, heads["n_heads"]) if heads
                           else names, y, splits, max(te.size for _, te in splits),
                           settings.calibration)
    out.columns, out.heads = columns, heads
    out.n_groups = int(len(set(groups))) if len(set(groups)) < y.size else None
    dropped = clamped_mask(run, names) if settings.exclude_clamped else None
    dist = Dist.from_env()
    mine = dist.mine(range(len(layer_list)))  # under torchrun, each rank fits its layers
    fits: dict[int, list] = {}
    shown = progress_mode(progress) if dist.rank == 0 else "quiet"
    with Progress(label, len(mine), unit="layers", mode=shown) as bar:
        for i in mine:
            X, mask = run.read_layer(layer_list[i], settings.site)
            X, mask = X[:, columns], mask[:, columns]
            if dropped is not None:
                mask = mask & ~dropped
            fits[i] = [_fit(X, mask, y, split, settings, heads, seed)
                       for split, seed in zip(splits, settings.seeds, strict=True)]
            del X, mask
            bar.advance(1)
            bar.checkpoint(f"layer {layer_list[i]} done")
    gathered = dist.gather(fits)
    if gathered is None:
        return None  # another rank: rank 0 writes the grid
    for part in gathered:
        for i, by_split in part.items():
            for s, fit in enumerate(by_split):
                out.store(s, i, fit, settings.seeds[s])
    return out


def _fit(X, mask, y, split, settings: ProbeSettings, heads: dict | None, seed: int):
    """One layer's cells on one split: a probe per position, or per position and head."""
    if heads is None:
        return fit_layer(X, mask, y, *split, settings, seed)
    return fit_head_layer(X, mask, y, split, settings, (heads["n_heads"], heads["head_dim"]),
                          seed)


def require_a_cell(res: GridResult, where) -> None:
    """Refuse a grid in which no cell could be fitted, naming the most common reason."""
    if res.best_cell() is not None:
        return
    reasons = list(res.reasons.values()) or ["no probe was fitted"]
    common = max(set(reasons), key=reasons.count)
    raise UserError(str(where), f"no cell could be fitted ({len(res.layers) * len(res.positions)}"
                    f" cells; e.g. {common})", "run more questions, or probe positions and "
                    "layers that have examples of both kinds")


def clamped_mask(run, names: list[str]) -> np.ndarray:
    """[n, P]: True where a record says a rule clamped that position (probe
    --exclude-clamped drops those examples from the cell)."""
    records = run.records()
    return np.array([[name in set(r.get("clamped", [])) for name in names] for r in records],
                    dtype=bool).reshape(len(records), len(names))


# --- writing ------------------------------------------------------------------------------

def pad_rows(row_sets: list[np.ndarray]) -> np.ndarray:
    width = max(r.size for r in row_sets)
    out = np.full((len(row_sets), width), -1, dtype=np.int64)
    for s, rows in enumerate(row_sets):
        out[s, :rows.size] = rows
    return out


def grid_tensors(res: GridResult, train_rows: list[np.ndarray],
                 test_rows: list[np.ndarray]) -> dict:
    tensors = {}
    for name, lo, hi in (("auc", res.auc_lo, res.auc_hi), ("accuracy", None, None)):
        by_seed = getattr(res, name)
        tensors[name] = nanmean(by_seed)
        tensors[f"{name}_std"] = nanstd(by_seed)
        tensors[f"{name}_by_seed"] = by_seed
        if lo is not None:
            tensors[f"{name}_lo"], tensors[f"{name}_hi"] = nanmean(lo), nanmean(hi)
    for name, values in res.counts.items():
        tensors[name] = values[0]  # identical across seeds up to rounding of class sizes
    tensors.update(calibration_tensors(res))
    tensors["scores"] = res.scores
    tensors["test_rows"] = pad_rows(test_rows)
    tensors["train_rows"] = pad_rows(train_rows)
    tensors["labels"] = res.labels.astype(np.int8)
    return tensors


def calibration_tensors(res: GridResult) -> dict:
    """The calibration metrics (mean, spread and per seed; recall with its interval) and the
    first seed's reliability curves, when the grid computed them."""
    if not res.cal:
        return {}
    tensors = {}
    for name in CAL_METRICS:
        by_seed = res.cal[name]
        tensors[name], tensors[f"{name}_std"] = nanmean(by_seed), nanstd(by_seed)
        tensors[f"{name}_by_seed"] = by_seed
        if f"{name}_lo" in res.cal:
            tensors[f"{name}_lo"] = nanmean(res.cal[f"{name}_lo"])
            tensors[f"{name}_hi"] = nanmean(res.cal[f"{name}_hi"])
    first = res.reliability[0]
    tensors["reliability_mean_prob"] = first[:, :, 0]
    tensors["reliability_observed"] = first[:, :, 1]
    tensors["reliability_count"] = np.nan_to_num(first[:, :, 2]).astype(np.int64)
    return tensors


def nan_reasons(res: GridResult, auc_mean: np.ndarray) -> list[dict]:
    items = []
    for i, layer in enumerate(res.layers):
        for j, position in enumerate(res.positions):
            if np.isnan(auc_mean[i, j]):
                reason = res.reasons.get((layer, position), "no probe was fitted")
                items.append({"layer": layer, "position": position, "reason": reason})
    return items


def run_ref(run, out: Path) -> dict:
    """How a grid names a run: id, content hash, and the run's path relative to the grid."""
    path = os.path.relpath(Path(run.path).resolve(), Path(out).resolve())
    return {"id": run.id, "content_hash": run.content_hash, "path": Path(path).as_posix()}


def grid_run_ref(run, out: Path) -> dict:
    """run_ref, and the content hash of the run whose answers this run reused (`run
    --answers-from`): grids of the two runs score the same answers, so the comparison
    pairs them (probe/compare.py)."""
    ref = run_ref(run, out)
    source = (run.meta.get("generation") or {}).get("answers_from")
    if isinstance(source, dict) and isinstance(source.get("content_hash"), str):
        ref["answers_from"] = source["content_hash"]
    return ref


def versions() -> dict:
    import torch

    return {"probeheat": __version__, "torch": torch.__version__, "numpy": np.__version__}


def common_meta(res: GridResult, settings: ProbeSettings, run) -> dict:
    meta = {
        "layers": res.layers, "positions": res.positions,
        "metrics": list(METRICS) + (list(CAL_METRICS) if res.cal else []),
        **target_meta(settings.target), "probe": settings.as_meta(),
        **{key: run.meta[key] for key in ("model", "dataset") if run.meta.get(key) is not None},
        "versions": versions(),
    }
    if res.heads:
        meta["heads"] = res.heads
    if res.cal:
        from .families import FAMILIES

        meta["calibration"] = calibration_meta(probabilities_by(
            FAMILIES[settings.family].probabilities))
    return meta


def make_grid(run_path, out_path, *, layers=None, positions=None,
              settings: ProbeSettings | None = None, overwrite: bool = False,
              progress: bool | str = True, **settings_kwargs) -> Path:
    """Probe every (layer, position) of a run bundle and write a grid bundle to out_path.

    ``settings`` (or the keywords of ``probe_settings``: seeds, test_fraction, C,
    standardize, preset, site) decide the probes.
    """
    out_path = Path(out_path)
    settings = settings or probe_settings(**settings_kwargs)
    if len(expand_target(settings.target)) > 1:
        raise ValueError("make_grid fits one target; use make_type_grids for all error types")
    check_not_inside(out_path, [Path(run_path)])
    check_destination(out_path, overwrite)  # before any bundle is read, let alone fitted
    run = open_run(run_path)
    res = probe_run(run, layers=layers, positions=positions, settings=settings,
                    progress=progress)
    if res is None:
        return None  # a torchrun rank other than 0
    require_a_cell(res, run.path)
    ids = [str(r["id"]) for r in run.records()]
    tensors = grid_tensors(res, [tr for tr, _ in res.splits], [te for _, te in res.splits])
    meta = common_meta(res, settings, run)
    meta.update({
        "splits": [{"seed": seed, "train_ids": [ids[k] for k in tr],
                    "test_ids": [ids[k] for k in te], "n_groups": res.n_groups}
                   for seed, (tr, te) in zip(settings.seeds, res.splits, strict=True)],
        "nan_reasons": nan_reasons(res, tensors["auc"]),
        "not_converged": res.not_converged,
        "run": grid_run_ref(run, out_path),
    })
    if settings.controls:
        add_controls(run, res, settings, (tensors, meta), progress)
    return write_grid(out_path, meta, tensors, overwrite=overwrite)


def make_type_grids(run_path, out_path, *, settings: ProbeSettings, overwrite: bool = False,
                    progress: bool | str = True, **where) -> tuple[list[Path], dict[str, str]]:
    """``--target error-type``: one grid per paper type, ``OUT/<type>``. Returns the grids
    written and, for each type that could not be probed, why (too few questions of it)."""
    from dataclasses import replace

    written, skipped = [], {}
    with grid_folder(run_path, out_path, overwrite, "--target error-type writes a folder "
                     "of grids, one per type") as out_path:
        for target in expand_target(settings.target):
            name = type_of(target)
            try:
                path = make_grid(run_path, out_path / name, overwrite=overwrite,
                                 settings=replace(settings, target=target),
                                 progress=progress, **where)
                if path is None:  # a torchrun rank other than 0: rank 0 reports
                    continue
                written.append(path)
            except UserError as exc:
                if "needs sampled answers" in exc.problem:
                    raise
                skipped[name] = exc.problem
        if not written and skipped:
            raise UserError(str(run_path), "no error type could be probed ("
                            + "; ".join(f"{k}: {v}" for k, v in skipped.items()) + ")",
                            "sample more questions (run --samples K on more questions)")
    return written, skipped


@contextmanager
def grid_folder(run_path, out_path, overwrite: bool, what: str) -> Iterator[Path]:
    """The folder of a command that writes several grids (OUT/NAME), checked and made; a
    folder made here is removed again if the command fails before any grid is in it (an
    empty --out would refuse the next try as already existing)."""
    out_path = Path(out_path)
    check_not_inside(out_path, [Path(run_path)])
    check_destination(out_path, overwrite)
    target_labels(open_run(run_path), "correct")  # a damaged or one-class run fails here
    if (out_path / "manifest.json").exists():
        raise UserError(str(out_path), f"is a bundle; {what}", "choose another --out")
    made = not out_path.exists()
    out_path.mkdir(parents=True, exist_ok=True)
    try:
        yield out_path
    except BaseException:
        if made and out_path.is_dir() and not any(out_path.iterdir()):
            out_path.rmdir()
        raise


def make_family_grids(run_path, out_path, *, settings: ProbeSettings, families: list[str],
                      overwrite: bool = False, progress: bool | str = True,
                      **where) -> dict[str, Path]:
    """``probe --probe a,b``: one grid per probe family, ``OUT/<family>``, on the same
    splits (the same seeds), so every cell can be compared with a paired test. Returns
    {family: path}; empty on a torchrun rank other than 0."""
    from dataclasses import replace

    from .families import check_family

    names = [check_family(f).name for f in families]
    written = {}
    with grid_folder(run_path, out_path, overwrite, "--probe a,b writes a folder of grids, "
                     "one per family") as out_path:
        for name in names:
            path = make_grid(run_path, out_path / name, overwrite=overwrite,
                             settings=replace(settings, family=name), progress=progress,
                             **where)
            if path is not None:
                written[name] = path
    return written


def add_controls(run, res: GridResult, settings: ProbeSettings, written, progress) -> None:
    """Baselines, the permutation null, the gain metrics and the paired tests, into the
    grid's tensors and metadata (probe/controls.py)."""
    from .controls import evaluate

    tensors, meta = written
    controls = evaluate(run, res, settings, res.columns, progress_mode(progress))
    tensors.update(controls.tensors)
    tensors.update(controls.metrics)
    meta["metrics"] = list(METRICS) + list(controls.metrics) + meta["metrics"][len(METRICS):]
    meta["baselines"] = controls.meta["baselines"]
    meta["controls"] = {**controls.meta.get("controls", {}),
                        "paired_test": "paired DeLong against the best baseline on the first "
                                       "seed's shared test examples; q = "
                                       f"{settings.correction} over the grid's cells"}
