"""Short, JSON-friendly summaries of bundles for `probeheat inspect` and the viewer's browser."""

from __future__ import annotations

import math

import numpy as np

from .base import Bundle


def _size(bundle: Bundle) -> int:
    return sum(int(entry.get("size", 0)) for entry in bundle.manifest["files"].values())


def _name(value, *keys) -> str:
    """A model or dataset entry is a dict in run metadata and may be a plain name elsewhere."""
    if isinstance(value, dict):
        for key in keys:
            if value.get(key):
                return str(value[key])
        return "?"
    return str(value) if value else "?"


def summarize(bundle: Bundle) -> dict:
    meta = bundle.meta
    out = {
        "kind": bundle.kind,
        "id": bundle.id,
        "format_version": bundle.manifest.get("format_version"),
        "created": bundle.manifest.get("created", ""),
        "files": len(bundle.manifest["files"]),
        "bytes": _size(bundle),
    }
    if bundle.kind == "run":
        bundle.records()  # the records agree with run.json (JSON only; no activations read)
        bundle.check_headers()
        n, correct = int(meta.get("n_examples", 0)), int(meta.get("n_correct", 0))
        out.update({
            "model": _name(meta.get("model"), "model_id", "id"),
            "dataset": _name(meta.get("dataset"), "name"),
            "examples": n,
            "accuracy": round(correct / n, 4) if n else None,
            "layers": f"{len(bundle.layers)} ({min(bundle.layers)}..{max(bundle.layers)})",
            "positions": bundle.positions,
            "sites": sorted(bundle.sites),
            "hidden_size": bundle.hidden_size,
            "dtype": bundle.dtype,
        })
        if bundle.samples:
            out["samples"] = samples_summary(bundle)
    elif bundle.kind == "grid":
        out.update({
            "model": _name(meta.get("model"), "model_id", "id"),
            "dataset": _name(meta.get("dataset"), "name"),
            "run": meta.get("run", {}).get("id", "?"),
            "target": meta.get("label", "incorrect"),
            "shape": _grid_shape(bundle),
            "metrics": bundle.metrics,
            "best_cell": best_cell_summary(bundle),
            "nan_cells": len(meta.get("nan_reasons", [])),
            "seeds": (meta.get("probe") or {}).get("seeds"),
            **evidence(bundle),
        })
    elif bundle.kind == "selection":
        out.update(selection_summary(bundle))
    elif bundle.kind == "generalization":
        out.update({"train_runs": bundle.train_names, "test_runs": bundle.test_names})
    elif bundle.kind == "steer":
        from .steer import steer_summary

        out.update(steer_summary(bundle))
    return out


def samples_summary(run) -> dict:
    """K, how they were drawn, and how many questions have each error type."""
    from collections import Counter

    spec = run.samples
    types = Counter(t for r in run.records() for t in (r.get("error_type") or {}).get("types", []))
    return {"k": spec["k"], "temperature": spec.get("temperature"),
            "top_p": spec.get("top_p"), "top_k": spec.get("top_k"),
            "layers": len(spec["layers"]), "positions": spec["positions"],
            "error_types": dict(sorted(types.items()))}


def selection_summary(sel) -> dict:
    """The verdict in one line, and the table behind it."""
    table, cell = sel.table, sel.meta["cell"]
    greedy, probe = table["greedy"], table["probe"]
    verdict = (f"probe at L{cell['layer']} {cell['position']}: accuracy {greedy['accuracy']:.3f}"
               f" (greedy) -> {probe['accuracy']:.3f} [{probe['lo']:.3f}, {probe['hi']:.3f}] "
               f"(probe-selected), McNemar p={probe['p_vs_greedy']:.3g}; majority "
               f"{table['majority']['accuracy']:.3f}, random {table['random']['accuracy']:.3f}; "
               f"n={probe['n']}")
    return {"run": sel.meta["run"]["id"], "grid": sel.meta["grid"]["id"], "verdict": verdict,
            "table": {m: {k: _r(v) if isinstance(v, float) else v for k, v in row.items()
                          if k != "what"} for m, row in table.items()}}


def _r(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else round(value, 4)


def best_cell_summary(grid) -> dict | None:
    """The best cell with its interval, n, seed spread and the evidence stored beside it."""
    values = grid.grid_values
    metric = grid.metrics[0]
    best = values.best_cell(metric)
    if best is None:
        return None
    cell = {"layer": best.layer, "position": best.position, metric: round(best.value, 4)}
    if metric in values.intervals:
        cell["interval"] = [_r(b[best.row, best.col]) for b in values.intervals[metric]]
    if metric in values.spread:
        cell["spread_over_seeds"] = _r(values.spread[metric][best.row, best.col])
    counts = grid.counts()
    if "n_test" in counts:
        cell["n_test"] = int(counts["n_test"][best.row, best.col])
    for name in ("gain_layer0", "gain_baseline"):
        if name in values.values:
            cell[name] = _r(values.values[name][best.row, best.col])
    for name in ("p_vs_baseline", "q_vs_baseline"):
        if name in grid.tensor_names:
            cell[name] = _r(grid.tensor(name)[best.row, best.col])
    if "perm_auc" in grid.tensor_names:
        null = grid.tensor("perm_auc")[best.col]
        if np.isfinite(null).any():
            cell["permutation_null"] = {"median": _r(np.nanmedian(null)),
                                        "p95": _r(np.nanpercentile(null, 95)),
                                        "k": int(np.isfinite(null).sum())}
    return cell


def evidence(grid) -> dict:
    """The baselines a grid stored (AUC, interval, n) and those absent, with the reason."""
    info = grid.meta.get("baselines") or {}
    if "baseline_auc" not in grid.tensor_names:
        return {"baselines": {"absent": info.get("absent", "the grid has no baselines")}}
    auc, lo, hi = (grid.tensor(f"baseline_auc{s}") for s in ("", "_lo", "_hi"))
    n = grid.tensor("baseline_n_test")[0]
    table = {name: {"auc": _r(auc[k]), "interval": [_r(lo[k]), _r(hi[k])], "n_test": int(n[k])}
             for k, name in enumerate(info.get("names", [])) if not math.isnan(auc[k])}
    return {"baselines": {"scored": table, "best": info.get("best"),
                          "absent": info.get("absent", {})}}


def _grid_shape(bundle) -> str:
    """"L layers x P positions", or for a head grid the heads at each position."""
    heads = bundle.heads
    if not heads:
        return f"{len(bundle.layers)} layers x {len(bundle.positions)} positions"
    where = heads.get("positions") or []
    return (f"{len(bundle.layers)} layers x {heads.get('n_heads')} heads at {len(where)} "
            f"position(s) ({', '.join(map(str, where))})")
