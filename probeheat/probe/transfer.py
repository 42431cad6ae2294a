"""Transfer grids: every cell's probe trained on one run and scored on another's examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import open_run, write_grid
from ..bundle.base import check_destination, check_not_inside
from ..errors import UserError
from ..progress import Progress
from .cells import fit_layer
from .grid import (
    GridResult,
    choose_layers,
    choose_positions,
    common_meta,
    grid_tensors,
    labels_of,
    nan_reasons,
    progress_mode,
    require_a_cell,
    run_ref,
)
from .settings import ProbeSettings, probe_settings

SAME_MODEL_FIX = "a probe only transfers between runs of the same model"


def check_compatible(runs: list, same_positions: bool) -> None:
    """Runs a probe can move between: same model and width, distinct runs."""
    first = runs[0]
    for other in runs[1:]:
        if other.model_id != first.model_id:
            raise UserError(str(other.path), f"model {other.model_id!r} differs from "
                            f"{first.model_id!r} in {first.path}", SAME_MODEL_FIX)
        if other.hidden_size != first.hidden_size:
            raise UserError(str(other.path), f"hidden size {other.hidden_size} differs from "
                            f"{first.hidden_size} in {first.path}", SAME_MODEL_FIX)
        if other.content_hash == first.content_hash:
            raise UserError(str(other.path), f"is the same run as {first.path}",
                            "use `probeheat probe` for a held-out split of one run")
        if same_positions and other.positions != first.positions:
            raise UserError(str(other.path), f"positions {other.positions} differ from "
                            f"{first.positions} in {first.path}",
                            "pass --positions with names both runs have")


def pair_layer(run_a, run_b, layer: int, columns_a, columns_b, site: str):
    """One layer of two runs stacked: rows of A first, then rows of B."""
    Xa, ma = run_a.read_layer(layer, site)
    Xb, mb = run_b.read_layer(layer, site)
    X = np.concatenate([Xa[:, columns_a], Xb[:, columns_b]])
    mask = np.concatenate([ma[:, columns_a], mb[:, columns_b]])
    return X, mask


def make_transfer_grid(train_run, test_run, out, *, layers=None, positions=None,
                       settings: ProbeSettings | None = None, overwrite: bool = False,
                       progress: bool | str = True) -> Path:
    """Train each cell's probe on ALL examples of train_run, score all examples of test_run.

    The grid's rows (scores, test_rows, labels) refer to test_run's records.
    """
    out = Path(out)
    check_not_inside(out, [Path(train_run), Path(test_run)])
    check_destination(out, overwrite)
    run_a, run_b = open_run(train_run), open_run(test_run)
    check_compatible([run_a, run_b], same_positions=positions is None)
    settings = settings or probe_settings()
    layer_list = choose_layers(run_a, layers, settings.site)
    choose_layers(run_b, layer_list, settings.site)
    names, cols_a = choose_positions(run_a, positions)
    _, cols_b = choose_positions(run_b, names)
    ya, yb = labels_of(run_a), labels_of(run_b)
    train, test = np.arange(ya.size), ya.size + np.arange(yb.size)
    res = GridResult.empty(layer_list, names, yb, [(train, test)], yb.size)
    with Progress("transfer", len(layer_list), unit="layers",
                  mode=progress_mode(progress)) as bar:
        for i, layer in enumerate(layer_list):
            X, mask = pair_layer(run_a, run_b, layer, cols_a, cols_b, settings.site)
            res.store(0, i, fit_layer(X, mask, np.concatenate([ya, yb]), train, test, settings),
                      None)
            bar.advance(1)
    require_a_cell(res, run_b.path)
    tensors = grid_tensors(res, [train], [np.arange(yb.size)])
    meta = common_meta(res, settings, run_b)
    meta["probe"].update({"seeds": [], "test_fraction": None,
                          "transfer": "trained on every example of train_run"})
    meta.update({
        "splits": [{"seed": None, "train_ids": [str(r["id"]) for r in run_a.records()],
                    "test_ids": [str(r["id"]) for r in run_b.records()]}],
        "nan_reasons": nan_reasons(res, tensors["auc"]),
        "not_converged": res.not_converged,
        "run": run_ref(run_b, out), "train_run": run_ref(run_a, out),
        "test_run": run_ref(run_b, out), "train_dataset": run_a.meta.get("dataset"),
    })
    return write_grid(out, meta, tensors, overwrite=overwrite)
