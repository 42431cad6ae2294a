"""What `probe` tells the user about a grid it wrote (also used by the demo)."""

from __future__ import annotations

import math

from ..bundle.grid import GridValues


def layer0_auc(values: GridValues, position: str) -> float | None:
    """The AUC at layer 0 (the token embedding, no context) of a position, if probed."""
    if 0 not in values.layers or position not in values.positions:
        return None
    value = values.metric("auc")[values.layers.index(0), values.positions.index(position)]
    return None if math.isnan(value) else float(value)


def token_baseline(values: GridValues, position: str) -> str:
    """The same position's AUC at layer 0: what reading the token itself gives. A best
    cell is worth only what it adds to that."""
    value = layer0_auc(values, position)
    return "" if value is None else f" (layer 0, the token alone: {value:.3f})"


def best_cell_line(values: GridValues) -> str:
    best = values.best_cell("auc")
    if best is None:
        return "no cell could be fitted"
    return (f"best cell: layer {best.layer}, {best.position}, AUC {best.value:.3f}"
            + token_baseline(values, best.position))
