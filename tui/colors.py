"""Colour ramps of the exported figures, without importing matplotlib.

matplotlib's ``Blues`` and ``RdBu`` are ColorBrewer ramps interpolated linearly between
evenly spaced stops and looked up in a 256-entry table; doing the same here makes a cell in
the viewer the colour it has in the exported figure.
"""

from __future__ import annotations

import math
from functools import cache

BLUES = ("#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6",
         "#4292c6", "#2171b5", "#08519c", "#08306b")
# Diverging ramp for A - B as the exported figures draw it (RdBu_r): blue where A is below
# B, red where A is above.
RDBU = ("#67001f", "#b2182b", "#d6604d", "#f4a582", "#fddbc7", "#f7f7f7",
        "#d1e5f0", "#92c5de", "#4393c3", "#2166ac", "#053061")
# Blues_r: metrics for which lower is better (ECE), so that the best cells are the darkest.
RAMPS = {"Blues": BLUES, "Blues_r": tuple(reversed(BLUES)), "RdBu": RDBU,
         "RdBu_r": tuple(reversed(RDBU))}
LUT_SIZE = 256  # matplotlib's default colormap resolution
# Without colour, darkness is shown by glyph density (light to dark, like the ramp).
SHADES = " ░▒▓█"

RGB = tuple[int, int, int]


def _hex(code: str) -> tuple[float, float, float]:
    return tuple(int(code[i:i + 2], 16) / 255 for i in (1, 3, 5))  # type: ignore[return-value]


@cache
def lookup_table(ramp: str) -> tuple[RGB, ...]:
    """The 256 colours matplotlib's colormap of that name holds, as 0-255 integers."""
    stops = [_hex(c) for c in RAMPS[ramp]]
    last = len(stops) - 1
    table = []
    for i in range(LUT_SIZE):
        x = i / (LUT_SIZE - 1) * last
        k = min(int(x), last - 1)
        f = x - k
        rgb = tuple(stops[k][c] + (stops[k + 1][c] - stops[k][c]) * f for c in range(3))
        # matplotlib converts its float table to bytes by rounding (to_rgba_array -> uint8)
        table.append(tuple(int(round(v * 255)) for v in rgb))
    return tuple(table)


def normalize(value: float, vmin: float, vmax: float) -> float:
    """Position of value in [vmin, vmax] as 0..1, clipped; NaN stays NaN."""
    if math.isnan(value):
        return math.nan
    if vmax <= vmin:
        return 1.0 if value >= vmax else 0.0
    return min(1.0, max(0.0, (value - vmin) / (vmax - vmin)))


def ramp_index(t: float) -> int:
    """The table entry matplotlib picks for a normalised value t (0..1)."""
    return min(LUT_SIZE - 1, max(0, int(t * LUT_SIZE)))


def color_of(value: float, vmin: float, vmax: float, ramp: str = "Blues") -> RGB | None:
    """RGB of a value on a ramp, or None for NaN (drawn as a missing cell)."""
    t = normalize(value, vmin, vmax)
    if math.isnan(t):
        return None
    return lookup_table(ramp)[ramp_index(t)]


def ink_for(rgb: RGB) -> RGB:
    """Black or white text, whichever reads better on that background."""
    r, g, b = rgb
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def shade_of(value: float, vmin: float, vmax: float, ramp: str = "Blues") -> str:
    """A glyph whose density tracks the value (its darkness on ``ramp``), for terminals
    without colour."""
    t = normalize(value, vmin, vmax)
    if ramp == "Blues_r":
        t = 1.0 - t
    if math.isnan(t):
        return "×"
    return SHADES[min(len(SHADES) - 1, int(t * len(SHADES)))]
