"""The figure of a steer bundle: accuracy against alpha, the probe's direction as a line
with its 95% interval, the random directions as a band (their lowest to highest accuracy
at each alpha), the unsteered accuracy as a dotted line. Same look and byte-identical
writing as the heatmaps (probeheat/figures/write.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .options import FigureOptions, output_format
from .write import figure_rc, save_figure

PROBE_COLOUR = "#08519c"  # the dark end of the heatmaps' Blues ramp
BAND_COLOUR = "#969696"


def export_steer(bundle, out: Path, options: FigureOptions | None = None, **changes) -> Path:
    """Write a steer bundle's accuracy-against-alpha figure to ``out`` (.png/.pdf/.svg)."""
    opts = FigureOptions.of(options, **changes)
    fmt = output_format(out)
    (width, height), dpi = opts.size(), opts.checked_dpi()
    opts.check_texts()
    table = bundle.table()
    alphas = np.asarray(bundle.alphas, dtype=np.float64)
    if table["accuracy"].shape[0] != alphas.size:
        raise UserError(str(bundle.path), "its table does not match its alphas",
                        "the bundle is damaged: run probeheat steer again")
    with figure_rc(width):
        fig = _figure(bundle, table, alphas, opts, (width, height or 0.72 * width))
        return save_figure(fig, Path(out), fmt, dpi)


def _figure(bundle, table: dict, alphas: np.ndarray, opts: FigureOptions, size):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    acc, lo, hi = table["accuracy"], table["accuracy_lo"], table["accuracy_hi"]
    if acc.shape[1] > 1:
        rand = acc[:, 1:]
        ax.fill_between(alphas, rand.min(1), rand.max(1), color=BAND_COLOUR, alpha=0.35,
                        linewidth=0, label=f"random directions (n={rand.shape[1]}, range)")
        for column in rand.T:
            ax.plot(alphas, column, color=BAND_COLOUR, linewidth=0.4, alpha=0.8)
    ax.fill_between(alphas, lo[:, 0], hi[:, 0], color=PROBE_COLOUR, alpha=0.15, linewidth=0)
    ax.plot(alphas, acc[:, 0], color=PROBE_COLOUR, marker="o", markersize=3, linewidth=1.2,
            label="probe direction (95% interval)")
    base = acc[list(alphas).index(0.0), 0]
    ax.axhline(base, color="black", linewidth=0.6, linestyle=":", label="unsteered")
    cell = bundle.meta["cell"]
    ax.set_title(opts.title if opts.title is not None
                 else f"Steering at layer {cell['layer']}, {cell['position']}")
    ax.set_xlabel(opts.xlabel or "alpha (standard deviations along the probe's direction)")
    ax.set_ylabel(opts.ylabel or "Accuracy")
    ax.set_xticks(alphas)
    ax.set_xticklabels([_tick(a) for a in alphas])
    ax.set_ylim(max(0.0, float(np.nanmin(lo)) - 0.05), min(1.0, float(np.nanmax(hi)) + 0.05))
    ax.legend(loc="best", frameon=False, fontsize="small")
    ax.spines[["top", "right"]].set_visible(False)
    return fig


def _tick(alpha: float) -> str:
    return "0" if alpha == 0 else f"{alpha:+g}"
