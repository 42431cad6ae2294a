"""Short, JSON-friendly summaries of bundles for `probeheat inspect` and the viewer's browser."""

from __future__ import annotations

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
    elif bundle.kind == "grid":
        best = bundle.best_cell(bundle.metrics[0])
        out.update({
            "model": _name(meta.get("model"), "model_id", "id"),
            "dataset": _name(meta.get("dataset"), "name"),
            "run": meta.get("run", {}).get("id", "?"),
            "shape": f"{len(bundle.layers)} layers x {len(bundle.positions)} positions",
            "metrics": bundle.metrics,
            "best_cell": None if best is None else
            {"layer": best[0], "position": best[1], bundle.metrics[0]: round(best[2], 4)},
            "nan_cells": len(meta.get("nan_reasons", [])),
        })
    else:
        out.update({"train_runs": bundle.train_names, "test_runs": bundle.test_names})
    return out
