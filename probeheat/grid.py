"""Run bundle -> grid bundle: one probe per (layer, position), streamed a layer at a time.

The probe predicts ERROR, as in the study: label 1 = the model's answer was incorrect, and a
cell's score is the probe's log-odds that the answer is wrong. Examples (not cells) are
split, stratified by label, once per seed; every cell of a seed uses the same split, so
cells are comparable and the example ids of each split are stored in grid.json.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import __version__
from .bundle import open_run, write_generalization, write_grid
from .bundle.base import check_destination
from .errors import UserError
from .probes import (
    MIN_TEST_PER_CLASS,
    MIN_TRAIN_PER_CLASS,
    PRESETS,
    fit_layer,
    stratified_split,
)

METRICS = ["auc", "accuracy"]
SCORE_MEANING = "log-odds that the answer is incorrect (probe decision function)"


@dataclass
class ProbeSettings:
    C: float = 1.0
    standardize: bool = True
    preset: str | None = None
    test_fraction: float = 0.2
    seeds: tuple[int, ...] = (0,)
    site: str = "resid"
    tol: float = 1e-8
    max_iter: int = 100
    level: float = 0.95

    def as_meta(self) -> dict:
        return {
            "solver": "probeheat exact L2 logistic regression (Newton; Gram space when d > n)",
            "objective": "C * sum(logloss) + 0.5 * ||w||^2, intercept unpenalised "
                         "(sklearn LogisticRegression at convergence)",
            "C": self.C, "standardize": self.standardize, "preset": self.preset,
            "test_fraction": self.test_fraction, "seeds": list(self.seeds), "site": self.site,
            "tol": self.tol, "max_iter": self.max_iter,
            "interval": f"DeLong {self.level:.0%} (per seed, bounds averaged over seeds)",
            "min_train_per_class": MIN_TRAIN_PER_CLASS, "min_test_per_class": MIN_TEST_PER_CLASS,
        }


def probe_settings(*, C: float = 1.0, standardize: bool = True, preset: str | None = None,
                   seeds=(0,), test_fraction: float = 0.2, site: str = "resid") -> ProbeSettings:
    """Validated settings; a preset fixes C and standardisation."""
    if preset is not None:
        if preset not in PRESETS:
            raise UserError("--preset", f"unknown preset {preset!r}",
                            f"choose one of: {', '.join(PRESETS)}")
        C, standardize = PRESETS[preset]["C"], PRESETS[preset]["standardize"]
    if not C > 0:
        raise UserError("--C", f"C must be positive, got {C}", "pass e.g. --C 1.0")
    if not 0.0 < test_fraction < 1.0:
        raise UserError("--test-fraction", f"must lie strictly between 0 and 1, got "
                        f"{test_fraction}", "pass e.g. --test-fraction 0.2")
    seeds = tuple(int(s) for s in seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError("--seeds", f"need distinct seeds, got {list(seeds)}", "pass e.g. --seeds 0 1 2")
    return ProbeSettings(float(C), bool(standardize), preset, float(test_fraction), seeds, site)


# --- selecting what to probe ---------------------------------------------------------------

def _select_layers(run, layers, site: str) -> list[int]:
    available = run.sites.get(site)
    if available is None:
        raise UserError("--site", f"run has no site {site!r}", f"sites here: {', '.join(run.sites)}")
    if layers is None:
        return list(available)
    chosen = [int(x) for x in layers]
    missing = [x for x in chosen if x not in available]
    if missing:
        raise UserError("--layers", f"run {run.path} has no {site} layer(s) {missing}",
                        f"layers here: {_span(available)}")
    return list(dict.fromkeys(chosen))


def _select_positions(run, positions) -> tuple[list[str], list[int]]:
    if positions is None:
        names = list(run.positions)
    else:
        names = list(dict.fromkeys(str(p) for p in positions))
        missing = [p for p in names if p not in run.positions]
        if missing:
            raise UserError("--positions", f"run {run.path} has no position(s) {missing}",
                            f"positions here: {', '.join(run.positions)}")
    return names, [run.positions.index(p) for p in names]


def _span(values: list[int]) -> str:
    ok = values == list(range(values[0], values[-1] + 1)) if values else False
    return f"{values[0]}-{values[-1]}" if ok and len(values) > 2 else ", ".join(map(str, values))


def error_labels(run) -> np.ndarray:
    """1 where the model's answer was incorrect, per record; refuses a single-class run."""
    y = np.array([0 if r["correct"] else 1 for r in run.records()], dtype=np.int64)
    wrong = int(y.sum())
    if wrong == 0 or wrong == y.size:
        kind = "correct" if wrong == 0 else "incorrect"
        raise UserError(str(run.path), f"all {y.size} answers are {kind}: a probe needs both "
                        "correct and incorrect answers", "run more (or harder) questions")
    return y


# --- progress -----------------------------------------------------------------------------

@contextmanager
def _progress(enabled: bool, total_layers: int, cells_per_layer: int, label: str):
    """Yields advance(): a rich bar with layers done and cells/s, or a no-op."""
    if not enabled:
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    start = time.perf_counter()
    columns = [TextColumn(f"{label} layers"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn()]
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total_layers, rate="")

        def advance():
            done = bar.tasks[0].completed + 1
            rate = done * cells_per_layer / max(time.perf_counter() - start, 1e-9)
            bar.update(task, advance=1, rate=f"{rate:.1f} cells/s")

        yield advance


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

    def mean_auc(self) -> np.ndarray:
        return _nanmean(self.auc)

    def best_cell(self) -> tuple[int, int] | None:
        mean = self.mean_auc()
        if np.isnan(mean).all():
            return None
        i, j = np.unravel_index(np.nanargmax(mean), mean.shape)
        return int(i), int(j)


def _nanmean(a: np.ndarray) -> np.ndarray:
    fitted = (~np.isnan(a)).sum(0)
    total = np.where(np.isnan(a), 0.0, a).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(fitted > 0, total / np.maximum(fitted, 1), np.nan)


def _nanstd(a: np.ndarray) -> np.ndarray:
    mean = _nanmean(a)
    fitted = (~np.isnan(a)).sum(0)
    sq = np.where(np.isnan(a), 0.0, (a - mean) ** 2).sum(0)
    return np.where(fitted > 0, np.sqrt(sq / np.maximum(fitted, 1)), np.nan)


def probe_run(run, *, layers=None, positions=None, settings: ProbeSettings | None = None,
              progress: bool = True, label: str = "probe") -> GridResult:
    """Fit every (layer, position) probe of an open run bundle, for each seed's split."""
    settings = settings or ProbeSettings()
    layer_list = _select_layers(run, layers, settings.site)
    names, columns = _select_positions(run, positions)
    y = error_labels(run)
    splits = [stratified_split(y, settings.test_fraction, seed) for seed in settings.seeds]
    S, L, P = len(splits), len(layer_list), len(names)
    K = max(te.size for _, te in splits)
    out = GridResult(layer_list, names, y, splits, *(np.full((S, L, P), np.nan) for _ in range(4)),
                     {k: np.zeros((S, L, P), np.int64) for k in ("n_train", "n_test", "n_test_pos")},
                     np.full((S, L, P, K), np.nan, dtype=np.float32))
    with _progress(progress, L, P * S, label) as advance:
        for i, layer in enumerate(layer_list):
            X, mask = run.read_layer(layer, settings.site)
            X, mask = X[:, columns], mask[:, columns]
            for s, (tr, te) in enumerate(splits):
                fit = fit_layer(X, mask, y, tr, te, C=settings.C,
                                standardize=settings.standardize, tol=settings.tol,
                                max_iter=settings.max_iter, level=settings.level)
                _store(out, s, i, fit, te.size, settings.seeds[s])
            del X, mask
            advance()
    return out


def _store(out: GridResult, s: int, i: int, fit, k: int, seed: int) -> None:
    out.auc[s, i], out.auc_lo[s, i], out.auc_hi[s, i] = fit.auc, fit.auc_lo, fit.auc_hi
    out.accuracy[s, i] = fit.accuracy
    for name in out.counts:
        out.counts[name][s, i] = getattr(fit, name)
    out.scores[s, i, :, :k] = fit.scores.astype(np.float32)
    layer = out.layers[i]
    for p, reason in fit.reasons.items():
        out.reasons.setdefault((layer, out.positions[p]), reason)
    for p in np.flatnonzero(~fit.converged & np.isfinite(fit.auc)):
        out.not_converged.append({"layer": layer, "position": out.positions[p], "seed": seed})


def _pad_rows(row_sets: list[np.ndarray]) -> np.ndarray:
    width = max(r.size for r in row_sets)
    out = np.full((len(row_sets), width), -1, dtype=np.int64)
    for s, rows in enumerate(row_sets):
        out[s, :rows.size] = rows
    return out


def _tensors(res: GridResult, train_rows: list[np.ndarray], test_rows: list[np.ndarray]) -> dict:
    tensors = {}
    for name, lo, hi in (("auc", res.auc_lo, res.auc_hi), ("accuracy", None, None)):
        by_seed = getattr(res, name)
        tensors[name] = _nanmean(by_seed)
        tensors[f"{name}_std"] = _nanstd(by_seed)
        tensors[f"{name}_by_seed"] = by_seed
        if lo is not None:
            tensors[f"{name}_lo"], tensors[f"{name}_hi"] = _nanmean(lo), _nanmean(hi)
    for name, values in res.counts.items():
        tensors[name] = values[0]  # identical across seeds up to rounding of class sizes
    tensors["scores"] = res.scores
    tensors["test_rows"] = _pad_rows(test_rows)
    tensors["train_rows"] = _pad_rows(train_rows)
    tensors["labels"] = res.labels.astype(np.int8)
    return tensors


def _nan_reasons(res: GridResult, auc_mean: np.ndarray) -> list[dict]:
    items = []
    for i, layer in enumerate(res.layers):
        for j, position in enumerate(res.positions):
            if np.isnan(auc_mean[i, j]):
                reason = res.reasons.get((layer, position), "no probe was fitted")
                items.append({"layer": layer, "position": position, "reason": reason})
    return items


def _run_ref(run) -> dict:
    return {"id": run.id, "content_hash": run.content_hash, "path": str(Path(run.path).resolve())}


def _versions() -> dict:
    import torch

    return {"probeheat": __version__, "torch": torch.__version__, "numpy": np.__version__}


def _common_meta(res: GridResult, settings: ProbeSettings, run) -> dict:
    return {
        "layers": res.layers, "positions": res.positions, "metrics": list(METRICS),
        "label": "incorrect",
        "label_meaning": "1 = the model's answer was incorrect (error detection, as in the study)",
        "score": SCORE_MEANING, "probe": settings.as_meta(),
        "model": run.meta.get("model"), "dataset": run.meta.get("dataset"),
        "versions": _versions(),
    }


def make_grid(run_path, out_path, *, layers=None, positions=None, seeds=(0,),
              test_fraction: float = 0.2, C: float = 1.0, standardize: bool = True,
              preset: str | None = None, overwrite: bool = False, progress: bool = True,
              site: str = "resid") -> Path:
    """Probe every (layer, position) of a run bundle and write a grid bundle to out_path."""
    run = open_run(run_path)
    check_destination(Path(out_path), overwrite)  # before minutes of fitting, not after
    settings = probe_settings(C=C, standardize=standardize, preset=preset, seeds=seeds,
                              test_fraction=test_fraction, site=site)
    res = probe_run(run, layers=layers, positions=positions, settings=settings,
                    progress=progress)
    ids = [str(r["id"]) for r in run.records()]
    tensors = _tensors(res, [tr for tr, _ in res.splits], [te for _, te in res.splits])
    meta = _common_meta(res, settings, run)
    meta.update({
        "splits": [{"seed": seed, "train_ids": [ids[k] for k in tr],
                    "test_ids": [ids[k] for k in te]}
                   for seed, (tr, te) in zip(settings.seeds, res.splits, strict=True)],
        "nan_reasons": _nan_reasons(res, tensors["auc"]),
        "not_converged": res.not_converged,
        "run": _run_ref(run),
    })
    return write_grid(Path(out_path), meta, tensors, overwrite=overwrite)


# --- transfer: train on one run, test on another -------------------------------------------

def _model_id(run) -> str | None:
    model = run.meta.get("model")
    return model.get("id") if isinstance(model, dict) else model


def _check_compatible(runs: list, same_positions: bool) -> None:
    first = runs[0]
    for other in runs[1:]:
        if _model_id(other) != _model_id(first):
            raise UserError(str(other.path), f"model {_model_id(other)!r} differs from "
                            f"{_model_id(first)!r} in {first.path}",
                            "a probe only transfers between runs of the same model")
        if other.hidden_size != first.hidden_size:
            raise UserError(str(other.path), f"hidden size {other.hidden_size} differs from "
                            f"{first.hidden_size} in {first.path}",
                            "a probe only transfers between runs of the same model")
        if other.content_hash == first.content_hash:
            raise UserError(str(other.path), f"is the same run as {first.path}",
                            "use `probeheat probe` for a held-out split of one run")
        if same_positions and other.positions != first.positions:
            raise UserError(str(other.path), f"positions {other.positions} differ from "
                            f"{first.positions} in {first.path}",
                            "pass --positions with names both runs have")


def _pair_layer(run_a, run_b, layer: int, columns_a, columns_b, site: str):
    """One layer of two runs stacked: rows of A first, then rows of B."""
    Xa, ma = run_a.read_layer(layer, site)
    Xb, mb = run_b.read_layer(layer, site)
    X = np.concatenate([Xa[:, columns_a], Xb[:, columns_b]])
    mask = np.concatenate([ma[:, columns_a], mb[:, columns_b]])
    return X, mask


def make_transfer_grid(train_run, test_run, out, *, layers=None, positions=None,
                       C: float = 1.0, standardize: bool = True, preset: str | None = None,
                       overwrite: bool = False, progress: bool = True,
                       site: str = "resid") -> Path:
    """Train each cell's probe on ALL examples of train_run, score all examples of test_run.

    The grid's rows (scores, test_rows, labels) refer to test_run's records.
    """
    run_a, run_b = open_run(train_run), open_run(test_run)
    check_destination(Path(out), overwrite)
    _check_compatible([run_a, run_b], same_positions=positions is None)
    settings = probe_settings(C=C, standardize=standardize, preset=preset, site=site)
    layer_list = _select_layers(run_a, layers, site)
    _select_layers(run_b, layer_list, site)
    names, cols_a = _select_positions(run_a, positions)
    _, cols_b = _select_positions(run_b, names)
    ya, yb = error_labels(run_a), error_labels(run_b)
    na, nb = ya.size, yb.size
    y = np.concatenate([ya, yb])
    train, test = np.arange(na), na + np.arange(nb)
    L, P = len(layer_list), len(names)
    res = GridResult(layer_list, names, yb, [(train, test)],
                     *(np.full((1, L, P), np.nan) for _ in range(4)),
                     {k: np.zeros((1, L, P), np.int64) for k in ("n_train", "n_test", "n_test_pos")},
                     np.full((1, L, P, nb), np.nan, dtype=np.float32))
    with _progress(progress, L, P, "transfer") as advance:
        for i, layer in enumerate(layer_list):
            X, mask = _pair_layer(run_a, run_b, layer, cols_a, cols_b, site)
            fit = fit_layer(X, mask, y, train, test, C=settings.C,
                            standardize=settings.standardize, tol=settings.tol,
                            max_iter=settings.max_iter, level=settings.level)
            _store(res, 0, i, fit, nb, -1)
            advance()
    tensors = _tensors(res, [train], [np.arange(nb)])
    meta = _common_meta(res, settings, run_b)
    meta["probe"].update({"seeds": [], "test_fraction": None,
                          "transfer": "trained on every example of train_run"})
    ids_a = [str(r["id"]) for r in run_a.records()]
    ids_b = [str(r["id"]) for r in run_b.records()]
    meta.update({
        "splits": [{"seed": None, "train_ids": ids_a, "test_ids": ids_b}],
        "nan_reasons": _nan_reasons(res, tensors["auc"]),
        "not_converged": res.not_converged,
        "run": _run_ref(run_b), "train_run": _run_ref(run_a), "test_run": _run_ref(run_b),
        "train_dataset": run_a.meta.get("dataset"),
    })
    return write_grid(Path(out), meta, tensors, overwrite=overwrite)


# --- generalization matrix ------------------------------------------------------------------

def _common_names(runs: list, positions) -> list[str]:
    if positions is not None:
        return [p for p in dict.fromkeys(str(p) for p in positions)]
    common = [p for p in runs[0].positions if all(p in r.positions for r in runs[1:])]
    if not common:
        raise UserError("--positions", "the runs share no position",
                        "probe runs captured with a common position set")
    return common


def _run_names(runs: list) -> list[str]:
    names = []
    for run in runs:
        dataset = run.meta.get("dataset")
        names.append(dataset.get("name") if isinstance(dataset, dict) else None)
    if None in names or len(set(names)) < len(names):
        names = [Path(run.path).name for run in runs]
    if len(set(names)) < len(names):
        names = [f"{name}#{k}" for k, name in enumerate(names)]
    return [str(n) for n in names]


def _cross_auc(run_a, run_b, res_a: GridResult, res_b: GridResult, cell, settings):
    """Probe at run_a's cell trained on each seed's train split of A, tested on B's test split.

    Returns (auc, lo, hi, n_test) averaged over seeds (NaN when a split has too few)."""
    i, j = cell
    layer, position = res_a.layers[i], res_a.positions[j]
    col_a = [run_a.positions.index(position)]
    col_b = [run_b.positions.index(position)]
    X, mask = _pair_layer(run_a, run_b, layer, col_a, col_b, settings.site)
    na = res_a.labels.size
    y = np.concatenate([res_a.labels, res_b.labels])
    rows = []
    for (tr_a, _), (_, te_b) in zip(res_a.splits, res_b.splits, strict=True):
        fit = fit_layer(X, mask, y, tr_a, na + te_b, C=settings.C,
                        standardize=settings.standardize, tol=settings.tol,
                        max_iter=settings.max_iter, level=settings.level)
        rows.append((fit.auc[0], fit.auc_lo[0], fit.auc_hi[0], fit.n_test[0]))
    return tuple(_nanmean(np.array(rows, dtype=np.float64)))


def generalize(runs, out, *, layers=None, positions=None, seeds=(0,),
               test_fraction: float = 0.2, C: float = 1.0, standardize: bool = True,
               preset: str | None = None, overwrite: bool = False, progress: bool = True,
               site: str = "resid") -> Path:
    """Train x test AUC matrix, each row at its training run's best cell (as in the study).

    Each run is probed on its own split first (the full grid, to find its best cell by mean
    test AUC). Entry (a, b) trains at run a's best cell on a's training split and tests on
    b's test split (same seeds); the diagonal is run a's own held-out AUC there.
    """
    if len(runs) < 2:
        raise UserError("runs", f"need at least 2 run bundles, got {len(runs)}",
                        "pass two or more runs of the same model")
    opened = [open_run(r) for r in runs]
    check_destination(Path(out), overwrite)
    for k, run in enumerate(opened):
        for other in opened[k + 1:]:
            _check_compatible([run, other], same_positions=False)
    settings = probe_settings(C=C, standardize=standardize, preset=preset, seeds=seeds,
                              test_fraction=test_fraction, site=site)
    names = _common_names(opened, positions)
    results = [probe_run(run, layers=layers, positions=names, settings=settings,
                         progress=progress, label=f"probe {k + 1}/{len(opened)}")
               for k, run in enumerate(opened)]
    cells = [res.best_cell() for res in results]
    for run, cell in zip(opened, cells, strict=True):
        if cell is None:
            raise UserError(str(run.path), "no cell could be probed (too few examples per "
                            "class)", "run more questions")
    R = len(opened)
    mats = np.full((4, R, R), np.nan)
    for a in range(R):
        for b in range(R):
            if a == b:
                i, j = cells[a]
                res = results[a]
                mats[:, a, a] = (res.mean_auc()[i, j], _nanmean(res.auc_lo)[i, j],
                                 _nanmean(res.auc_hi)[i, j], res.counts["n_test"][0, i, j])
            else:
                mats[:, a, b] = _cross_auc(opened[a], opened[b], results[a], results[b],
                                           cells[a], settings)
    return _write_generalization(out, opened, results, cells, mats, settings, overwrite)


def _json_matrix(m: np.ndarray) -> list:
    return [[None if np.isnan(v) else float(v) for v in row] for row in m]


def _write_generalization(out, runs, results, cells, mats, settings, overwrite) -> Path:
    names = _run_names(runs)
    refs = []
    for name, run, res, (i, j) in zip(names, runs, results, cells, strict=True):
        refs.append({"name": name, **_run_ref(run), "layer": res.layers[i],
                     "position": res.positions[j], "best_auc": float(res.mean_auc()[i, j]),
                     "dataset": run.meta.get("dataset")})
    meta = {
        "train_runs": refs, "test_runs": refs, "label": "incorrect",
        "cell": "each training run's best cell (highest mean test AUC in its own grid)",
        "entry": "rows = train run, columns = test run; trained on the row run's training "
                 "split, tested on the column run's test split, mean over seeds",
        "probe": settings.as_meta(), "versions": _versions(),
        # the generalization writer stores only "auc" as a tensor: intervals ride in JSON
        "auc_lo": _json_matrix(mats[1]), "auc_hi": _json_matrix(mats[2]),
        "n_test": _json_matrix(mats[3]),
    }
    return write_generalization(Path(out), meta, mats[0], overwrite=overwrite)
