"""What a figure looks like: `FigureOptions`, validated once, and the output file's format.

Pure Python (no matplotlib): the CLI and the viewer check options before anything heavy.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import NamedTuple

from ..bundle.grid import METRIC_RANGES
from ..errors import UserError
from ..selection import layer_number

WIDTHS = {"single": 3.25, "double": 6.75}
FORMATS = (".png", ".pdf", ".svg")
DEFAULT_RANGE = (0.5, 1.0)
# Metrics whose values do not live in 0.5..1: their default colour range. ECE is drawn on
# a reversed ramp (figures/view.py; bundle/grid.py LOWER_IS_BETTER): lower is better, so
# well-calibrated cells are dark.
# METRIC_RANGES (bundle/grid.py): one table of default ranges for figures and the viewer.


class Highlight(NamedTuple):
    """A rectangle over layers layer_lo..layer_hi and positions pos_lo..pos_hi (inclusive)."""

    layer_lo: int
    layer_hi: int
    pos_lo: str
    pos_hi: str


@dataclass
class FigureOptions:
    """Every look option of an exported figure (the CLI's "look" group, the viewer's view)."""

    metric: str = "auc"
    positions: object = None  # a selection (probeheat.selection) or a list of names
    layers: object = None
    width: str | float = "single"
    height: float | None = None
    vmin: float | None = None
    vmax: float | None = None
    annotate: bool = False
    mark_best: bool = False
    highlights: tuple = ()
    title: str | None = None
    dpi: int = 200
    xlabel: str | None = "Token"
    ylabel: str | None = "Layer"
    panels: str | None = None
    panel_titles: list[str] | None = field(default=None)
    baselines: bool = False  # a strip of the grid's baselines beside the heatmap
    spread: bool = True  # with --annotate and several seeds: "0.85 ±.02" in each cell
    position: str | None = None  # head grids: draw only this position's layer x head panel

    @classmethod
    def of(cls, options: FigureOptions | None = None, **changes) -> FigureOptions:
        """Options from keywords (unknown ones refused by name), on top of ``options``."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown figure option(s): {', '.join(unknown)}")
        base = dict(vars(options)) if options is not None else {}
        return cls(**{**base, **changes})

    def size(self) -> tuple[float, float | None]:
        return parse_width(self.width), parse_height(self.height)

    def checked_dpi(self) -> int:
        if not 30 <= int(self.dpi) <= 2400:
            raise UserError("--dpi", f"{self.dpi} is outside 30..2400", "the default is 200")
        return int(self.dpi)

    def check_texts(self) -> None:
        """Refuse a title or label matplotlib cannot draw (mathtext between $...$)."""
        texts = [("--title", self.title), ("--xlabel", self.xlabel), ("--ylabel", self.ylabel)]
        texts += [("--panel-titles", t) for t in self.panel_titles or []]
        for flag, text in texts:
            if text and "$" in text.replace(r"\$", ""):
                from matplotlib.mathtext import MathTextParser

                try:
                    MathTextParser("agg").parse(text, 72)
                except ValueError as exc:
                    detail = str(exc).strip().splitlines()[-1][:120]
                    raise UserError(flag, f"{text!r} is not valid mathtext ({detail})",
                                    "write a literal dollar sign as \\$, or fix the formula"
                                    ) from None

    def color_range(self) -> tuple[float, float]:
        default = METRIC_RANGES.get(self.metric, DEFAULT_RANGE)
        lo = default[0] if self.vmin is None else float(self.vmin)
        hi = default[1] if self.vmax is None else float(self.vmax)
        check_range(lo, hi)
        return lo, hi


def output_format(out: Path, where: str = "-o") -> str:
    """'png' | 'pdf' | 'svg' from the file name; refuses other extensions and bad folders."""
    out = Path(out)
    if out.is_dir():
        raise UserError(str(out), "is a folder", "name a file inside it, e.g. heatmap.pdf")
    suffix = out.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(where, f"unsupported extension {suffix or '(none)'!r} in {out}",
                        "name the file .png, .pdf or .svg")
    folder = out.parent
    if not folder.is_dir():
        raise UserError(str(out), f"folder {folder} does not exist", "create it first")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(str(out), f"folder {folder} is not writable", "choose another path")
    return suffix[1:]


def parse_width(text: str | float) -> float:
    """'single' (3.25 in), 'double' (6.75 in) or a width in inches."""
    if isinstance(text, int | float):
        value = float(text)
    elif str(text).strip().lower() in WIDTHS:
        return WIDTHS[str(text).strip().lower()]
    else:
        try:
            value = float(str(text).strip().removesuffix("in"))
        except ValueError:
            raise UserError("--width", f"{text!r} is not a width",
                            "use single, double or inches, e.g. 4.5") from None
    if not 1.0 <= value <= 20.0:
        raise UserError("--width", f"{value:g} in is outside 1..20 inches", "use single or double")
    return value


def parse_height(value: float | None) -> float | None:
    if value is not None and not 1.0 <= float(value) <= 20.0:
        raise UserError("--height", f"{value:g} in is outside 1..20 inches",
                        "leave it out to derive the height from the grid")
    return None if value is None else float(value)


def parse_panels(text: str, n: int) -> tuple[int, int]:
    """'2x3' -> (2, 3); refuses a shape that cannot hold n panels."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text or "")
    if not match or 0 in (int(match[1]), int(match[2])):
        raise UserError("--panels", f"{text!r} is not ROWSxCOLS", "e.g. --panels 2x3")
    rows, cols = int(match[1]), int(match[2])
    if rows * cols < n:
        raise UserError("--panels", f"{rows}x{cols} holds {rows * cols} panels, not {n} grids",
                        "give a shape with at least one cell per grid")
    if (rows - 1) * cols >= n or rows * (cols - 1) >= n:
        raise UserError("--panels", f"{rows}x{cols} leaves a row or column empty for {n} grids",
                        "choose a tighter shape")
    return rows, cols


def check_range(vmin: float, vmax: float) -> None:
    if not (math.isfinite(vmin) and math.isfinite(vmax)) or vmin >= vmax:
        raise UserError("--vmin/--vmax", f"{vmin:g}..{vmax:g} is not an increasing range",
                        "give --vmin below --vmax")


def parse_highlight(text: str) -> Highlight:
    """'4:28,first_answer:-1' -> Highlight(4, 28, 'first_answer', '-1'); single items allowed."""
    layers, sep, positions = str(text).partition(",")
    if not sep or not layers.strip() or not positions.strip() or "," in positions:
        raise UserError("--highlight", f"{text!r} is not LAYERS,POSITIONS",
                        "e.g. --highlight 4:28,first_answer:-1")
    lo, _, hi = layers.partition(":")
    plo, _, phi = positions.partition(":")
    hi, phi = hi or lo, phi or plo
    if not all(s.strip() for s in (lo, hi, plo, phi)):
        raise UserError("--highlight", f"{text!r} has an open range",
                        "give both ends, e.g. 4:28,first_answer:-1")
    return Highlight(layer_number(lo, "--highlight"), layer_number(hi, "--highlight"),
                     plo.strip(), phi.strip())


def resolve_highlight(h: Highlight, layers: list[int], positions: list[str]) -> tuple:
    """(row_lo, row_hi, col_lo, col_hi) of a highlight within the shown grid."""
    where = "--highlight"
    for layer in (h.layer_lo, h.layer_hi):
        if layer not in layers:
            shown = f"{layers[0]}..{layers[-1]}" if len(layers) > 1 else str(layers[0])
            raise UserError(where, f"layer {layer} is not shown (layers {shown})",
                            "highlight layers inside the figure")
    for pos in (h.pos_lo, h.pos_hi):
        if pos not in positions:
            raise UserError(where, f"position {pos!r} is not shown",
                            f"shown: {', '.join(positions)}")
    rows = sorted((layers.index(h.layer_lo), layers.index(h.layer_hi)))
    cols = sorted((positions.index(h.pos_lo), positions.index(h.pos_hi)))
    return rows[0], rows[1], cols[0], cols[1]
