"""The ? screen: every key of the screen, as typed, with its description (and, for the
heatmap, the cell glyphs and the column abbreviations)."""

from __future__ import annotations

from dataclasses import replace

from rich.table import Table
from rich.text import Text

from .keys import EVERYWHERE


def key_text(app, binding) -> str:
    """A binding's keys as the footer shows them ("[", "?", "←"), several joined by a space."""
    return " ".join(app.get_key_display(replace(binding, key=key.strip()))
                    for key in binding.key.split(","))


def keys_table(app, bindings, extra: tuple[tuple[str, str], ...] = ()) -> Table:
    from textual.binding import Binding

    out = Table.grid(padding=(0, 2))
    out.add_column(no_wrap=True)
    out.add_column()
    out.add_row(Text("Keys", style="bold underline"), "")
    for binding in bindings:
        out.add_row(Text(key_text(app, binding)), binding.tooltip or binding.description)
    for key, text in extra + EVERYWHERE:
        out.add_row(Text(key_text(app, Binding(key, "", ""))), text)
    return out


def heatmap_help(screen, positions: list[str], header_width: int) -> Table:
    from .heatmap import BEST_GLYPH, NAN_GLYPH, HeatmapView
    from .model import column_headers

    bindings = list(HeatmapView.BINDINGS) + list(type(screen).BINDINGS)
    out = keys_table(screen.app, bindings, (
        ("mouse", "hover shows a cell, click selects it, click again for detail"),))
    out.add_row("", "")
    out.add_row(Text("Cells", style="bold underline"), "")
    out.add_row(BEST_GLYPH, "best cell of the metric")
    out.add_row(NAN_GLYPH * 3, "no probe at that cell (the status line says why)")
    out.add_row("│ box", "a marked region (kept for export)")
    out.add_row("values", "the metric x 100 (the status line shows it in full)")
    out.add_row("", "")
    out.add_row(Text("Columns", style="bold underline"), "")
    for short, name in zip(column_headers(positions, header_width), positions, strict=True):
        if short != name:
            out.add_row(short, name)
    return out


def show_help(screen, bindings) -> None:
    """Open the ? screen of a screen whose keys are ``bindings``."""
    from .screens import TextScreen

    screen.app.push_screen(TextScreen(keys_table(screen.app, bindings), screen_id="help"))
