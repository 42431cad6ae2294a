"""The generalization matrix: probes trained on one run, tested on another, at best cells."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import open_run, write_generalization
from ..bundle.base import check_destination, check_not_inside
from ..errors import UserError
from ..selection import select_positions
from .cells import fit_layer
from .grid import GridResult, nanmean, probe_run, run_ref, versions
from .settings import ProbeSettings, probe_settings
from .transfer import check_compatible, pair_layer


def common_names(runs: list, positions) -> list[str]:
    """The positions to probe: those asked for (each run must have them), else the shared."""
    common = [p for p in runs[0].positions if all(p in r.positions for r in runs[1:])]
    if not common:
        raise UserError("--positions", "the runs share no position",
                        "probe runs captured with a common position set")
    return select_positions(positions, common, source="the positions every run has")


def run_names(runs: list) -> list[str]:
    names = []
    for run in runs:
        dataset = run.meta.get("dataset")
        names.append(dataset.get("name") if isinstance(dataset, dict) else None)
    if None in names or len(set(names)) < len(names):
        names = [Path(run.path).name for run in runs]
    if len(set(names)) < len(names):
        names = [f"{name}#{k}" for k, name in enumerate(names)]
    return [str(n) for n in names]


def cross_auc(run_a, run_b, res_a: GridResult, res_b: GridResult, cell,
              settings: ProbeSettings):
    """Probe at run_a's cell trained on each seed's train split of A, tested on B's test split.

    Returns (auc, lo, hi, n_test) averaged over seeds (NaN when a split has too few)."""
    i, j = cell
    layer, position = res_a.layers[i], res_a.positions[j]
    X, mask = pair_layer(run_a, run_b, layer, [run_a.positions.index(position)],
                         [run_b.positions.index(position)], settings.site)
    na = res_a.labels.size
    y = np.concatenate([res_a.labels, res_b.labels])
    rows = []
    for (tr_a, _), (_, te_b) in zip(res_a.splits, res_b.splits, strict=True):
        fit = fit_layer(X, mask, y, tr_a, na + te_b, settings)
        rows.append((fit.auc[0], fit.auc_lo[0], fit.auc_hi[0], fit.n_test[0]))
    return tuple(nanmean(np.array(rows, dtype=np.float64)))


def generalize(runs, out, *, layers=None, positions=None, settings: ProbeSettings | None = None,
               overwrite: bool = False, progress: bool | str = True,
               **settings_kwargs) -> Path:
    """Train x test AUC matrix, each row at its training run's best cell (as in the study).

    Each run is probed on its own split first (the full grid, to find its best cell by mean
    test AUC). Entry (a, b) trains at run a's best cell on a's training split and tests on
    b's test split (same seeds); the diagonal is run a's own held-out AUC there.
    """
    if len(runs) < 2:
        raise UserError("runs", f"need at least 2 run bundles, got {len(runs)}",
                        "pass two or more runs of the same model")
    check_not_inside(Path(out), [Path(r) for r in runs])
    check_destination(Path(out), overwrite)
    opened = [open_run(r) for r in runs]
    for k, run in enumerate(opened):
        for other in opened[k + 1:]:
            check_compatible([run, other], same_positions=False)
    settings = settings or probe_settings(**settings_kwargs)
    names = common_names(opened, positions)
    results = [probe_run(run, layers=layers, positions=names, settings=settings,
                         progress=progress, label=f"probe {k + 1}/{len(opened)}")
               for k, run in enumerate(opened)]
    if any(res is None for res in results):
        return None  # a torchrun rank other than 0: rank 0 writes the matrix
    cells = [res.best_cell() for res in results]
    for run, cell in zip(opened, cells, strict=True):
        if cell is None:
            raise UserError(str(run.path), "no cell could be probed (too few examples per "
                            "class)", "run more questions")
    mats = matrix(opened, results, cells, settings)
    return write_matrix(Path(out), opened, results, cells, mats, settings, overwrite)


def matrix(runs, results, cells, settings) -> np.ndarray:
    """[4, R, R]: AUC, interval bounds and n_test of every (train, test) pair."""
    R = len(runs)
    mats = np.full((4, R, R), np.nan)
    for a in range(R):
        for b in range(R):
            if a == b:
                i, j = cells[a]
                res = results[a]
                mats[:, a, a] = (res.mean_auc()[i, j], nanmean(res.auc_lo)[i, j],
                                 nanmean(res.auc_hi)[i, j], res.counts["n_test"][0, i, j])
            else:
                mats[:, a, b] = cross_auc(runs[a], runs[b], results[a], results[b], cells[a],
                                          settings)
    return mats


def _json_matrix(m: np.ndarray) -> list:
    return [[None if np.isnan(v) else float(v) for v in row] for row in m]


def write_matrix(out: Path, runs, results, cells, mats, settings, overwrite) -> Path:
    refs = []
    for name, run, res, (i, j) in zip(run_names(runs), runs, results, cells, strict=True):
        refs.append({"name": name, **run_ref(run, out), "layer": res.layers[i],
                     "position": res.positions[j], "best_auc": float(res.mean_auc()[i, j]),
                     "dataset": run.meta.get("dataset")})
    meta = {
        "train_runs": refs, "test_runs": refs, "label": "incorrect",
        "cell": "each training run's best cell (highest mean test AUC in its own grid)",
        "entry": "rows = train run, columns = test run; trained on the row run's training "
                 "split, tested on the column run's test split, mean over seeds",
        "probe": settings.as_meta(), "versions": versions(),
        # the generalization writer stores only "auc" as a tensor: intervals ride in JSON
        "auc_lo": _json_matrix(mats[1]), "auc_hi": _json_matrix(mats[2]),
        "n_test": _json_matrix(mats[3]),
    }
    return write_generalization(out, meta, mats[0], overwrite=overwrite)
