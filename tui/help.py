"""The ? screen: every key with its description, and the column abbreviations."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from .heatmap import BEST_GLYPH, NAN_GLYPH, HeatmapView
from .model import column_headers


def help_text(screen, positions: list[str], header_width: int) -> Table:
    out = Table.grid(padding=(0, 2))
    out.add_column(no_wrap=True)
    out.add_column()
    out.add_row(Text("Keys", style="bold underline"), "")
    for binding in list(HeatmapView.BINDINGS) + list(type(screen).BINDINGS):
        out.add_row(Text(binding.key.replace("_", " ")),
                    binding.tooltip or binding.description)
    out.add_row("mouse", "hover shows a cell, click selects it, click again for detail")
    out.add_row("ctrl+p", "command palette: every action by name")
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
