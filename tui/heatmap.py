"""The heatmap widget: a Line-API ScrollView that draws only the cells on screen.

Layers are rows (the first layer at the top, as in the study's figures), positions are
columns. Each cell is ``cell_width - 1`` characters of colour and a one-character gap; the
gaps carry the vertical edges of marked regions and underlines carry the horizontal ones,
so a region is drawn as a box without hiding any cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

from .colors import color_of, ink_for, shade_of
from .keys import HEATMAP_VIEW, bindings
from .model import Cells, column_headers

if TYPE_CHECKING:
    import numpy as np

HEADER_LINES = 1
MIN_CELL, MAX_CELL = 4, 9
NAN_GLYPH = "╱"
BEST_GLYPH = "★"
NS_GLYPH = "·"  # a diff cell whose difference is not significant (q >= 0.05)
UNDERLINE = Style(underline=True)
Box = tuple[int, int, int, int]  # row_lo, row_hi, col_lo, col_hi (inclusive indices)


@dataclass
class HeatFrame:
    """Everything the widget draws; a new frame replaces the old one and clears the cache."""

    values: Cells | np.ndarray  # [row, col] gives a cell's value; .shape
    row_labels: list[str]
    col_names: list[str]
    ramp: str = "Blues"
    vmin: float = 0.5
    vmax: float = 1.0
    best: tuple[int, int] | None = None
    show_values: bool = False
    diff: bool = False
    regions: tuple[Box, ...] = field(default_factory=tuple)
    faded: np.ndarray | None = None  # diff cells whose difference is not significant

    def text_of(self, value: float) -> str:
        """Cell text: the value x 100 (the status line shows it in full)."""
        if math.isnan(value):
            return ""
        return f"{value * 100:+.0f}" if self.diff else f"{value * 100:.0f}"


def box_of(a: tuple[int, int], b: tuple[int, int]) -> Box:
    return min(a[0], b[0]), max(a[0], b[0]), min(a[1], b[1]), max(a[1], b[1])


class HeatmapView(ScrollView, can_focus=True):
    """Grid of coloured cells with a cursor; scrolls in both directions."""

    COMPONENT_CLASSES = {
        "heatmap--cursor", "heatmap--hover", "heatmap--label", "heatmap--cursor-label",
        "heatmap--nan", "heatmap--region", "heatmap--pending",
    }
    DEFAULT_CSS = """
    HeatmapView { background: $surface; }
    HeatmapView > .heatmap--cursor { text-style: reverse bold; }
    HeatmapView > .heatmap--hover { text-style: bold underline; }
    HeatmapView > .heatmap--label { color: $text-muted; }
    HeatmapView > .heatmap--cursor-label { color: $accent; text-style: bold; }
    HeatmapView > .heatmap--nan { color: #737373; background: #d9d9d9; }
    HeatmapView > .heatmap--region { color: $text; text-style: bold; }
    HeatmapView > .heatmap--pending { color: $warning; text-style: bold; }
    """
    BINDINGS = bindings(HEATMAP_VIEW)

    cursor_row: reactive[int] = reactive(0, always_update=False, repaint=False)
    cursor_col: reactive[int] = reactive(0, always_update=False, repaint=False)

    class Hovered(Message):
        """The mouse is over a cell (row, col), or left the grid (None, None)."""

        def __init__(self, view: HeatmapView, row: int | None, col: int | None) -> None:
            super().__init__()
            self.view, self.row, self.col = view, row, col

    class CellChosen(Message):
        def __init__(self, view: HeatmapView, row: int, col: int) -> None:
            super().__init__()
            self.view, self.row, self.col = view, row, col

    def __init__(self, frame: HeatFrame | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.frame = frame or HeatFrame(Cells((0, 0), []), [], [])
        self.hover: tuple[int, int] | None = None
        self.anchor: tuple[int, int] | None = None  # first corner of a region being marked
        self.cell_width = MIN_CELL
        self._layout_width = -1  # the width the cells were fitted to
        self._headers: list[str] | None = None  # column headers at that fit
        self._styles_changed, self._signature = True, None  # see notify_style_update
        self._strips: LRUCache[tuple, Strip] = LRUCache(1024)
        self._styles: dict[tuple, Style] = {}
        # Called synchronously on every cursor move, so that whoever shows the cell (the
        # status line) repaints in the same frame as the grid (a message would come later).
        self.on_cursor_move = None

    # -- data -----------------------------------------------------------------------------

    @property
    def n_rows(self) -> int:
        return self.frame.values.shape[0]

    @property
    def n_cols(self) -> int:
        return self.frame.values.shape[1]

    @property
    def label_width(self) -> int:
        return max((len(s) for s in self.frame.row_labels), default=1) + 2

    def set_frame(self, frame: HeatFrame) -> None:
        self.frame = frame
        self.cursor_row = min(self.cursor_row, max(0, self.n_rows - 1))
        self.cursor_col = min(self.cursor_col, max(0, self.n_cols - 1))
        self._relayout(new_frame=True)

    def _relayout(self, new_frame: bool = False) -> None:
        """Fit the cells to the width; the rows drawn so far stay cached unless the frame
        or the cell width changed (a resize to the same width redraws nothing)."""
        width = self._content_width()
        self._layout_width = width
        fit = (width - self.label_width) // max(1, self.n_cols)
        cell_width = max(MIN_CELL, min(MAX_CELL, fit))
        if not new_frame and cell_width == self.cell_width and self._headers is not None:
            return
        self.cell_width = cell_width
        self._headers = column_headers(self.frame.col_names, self.cell_width - 1)
        self.virtual_size = Size(self.label_width + self.n_cols * self.cell_width,
                                 HEADER_LINES + self.n_rows)
        self._strips.clear()
        self.refresh()

    def _content_width(self) -> int:
        return self.scrollable_content_region.width or self.size.width

    def on_resize(self, event: events.Resize) -> None:
        self._relayout()
        self.call_after_refresh(self.scroll_to_cursor)

    def notify_style_update(self) -> None:
        """New CSS (a theme, a class): the next render compares the styles the cells use
        and redraws only if they changed (focus changes none, so gaining it redraws
        nothing). Compared at render time: Textual calls this before it updates the
        component classes' styles."""
        super().notify_style_update()
        self._styles_changed = True

    def _check_styles(self) -> None:
        self._styles_changed = False
        signature = (self.rich_style, *(self.get_component_rich_style(name, partial=True)
                                        for name in sorted(self.COMPONENT_CLASSES)))
        if signature != self._signature:
            self._strips.clear()
            self._styles.clear()
            self._signature = signature

    # -- cursor ---------------------------------------------------------------------------

    def move_to(self, row: int, col: int) -> None:
        if not self.n_rows or not self.n_cols:
            return
        row = max(0, min(self.n_rows - 1, row))
        col = max(0, min(self.n_cols - 1, col))
        old = self.cursor_row
        self.cursor_row, self.cursor_col = row, col
        if self.anchor is not None:
            self.refresh()
        else:
            self.refresh_lines(HEADER_LINES + old)
            self.refresh_lines(HEADER_LINES + row)
            self.refresh(Region(0, 0, self.size.width, HEADER_LINES))
        self.scroll_to_cursor()
        if self.on_cursor_move is not None:
            self.on_cursor_move(row, col)

    def scroll_to_cursor(self) -> None:
        width = self.scrollable_content_region.width
        height = self.scrollable_content_region.height - HEADER_LINES
        cw = self.cell_width
        x = max(min(self.scroll_x, self.cursor_col * cw),
                self.label_width + (self.cursor_col + 1) * cw - width)
        y = max(min(self.scroll_y, self.cursor_row), self.cursor_row - height + 1)
        self.scroll_to(x=x, y=y, animate=False, immediate=True)

    def action_move(self, d_row: int, d_col: int) -> None:
        self.move_to(self.cursor_row + d_row, self.cursor_col + d_col)

    def action_page(self, direction: int) -> None:
        step = max(1, self.scrollable_content_region.height - HEADER_LINES)
        self.move_to(self.cursor_row + direction * step, self.cursor_col)

    def action_first_layer(self) -> None:
        self.move_to(0, self.cursor_col)

    def action_last_layer(self) -> None:
        self.move_to(self.n_rows - 1, self.cursor_col)

    def action_first_position(self) -> None:
        self.move_to(self.cursor_row, 0)

    def action_last_position(self) -> None:
        self.move_to(self.cursor_row, self.n_cols - 1)

    def action_choose(self) -> None:
        if self.n_rows and self.n_cols:
            self.post_message(self.CellChosen(self, self.cursor_row, self.cursor_col))

    # -- mouse ----------------------------------------------------------------------------

    def cell_at(self, x: int, y: int) -> tuple[int, int] | None:
        """The cell under widget coordinates (x, y), or None (labels, gaps past the edge)."""
        if y < HEADER_LINES or x < self.label_width:
            return None
        row = int(self.scroll_y) + y - HEADER_LINES
        col = (int(self.scroll_x) + x - self.label_width) // self.cell_width
        if 0 <= row < self.n_rows and 0 <= col < self.n_cols:
            return row, col
        return None

    def _set_hover(self, cell: tuple[int, int] | None) -> None:
        if cell == self.hover:
            return
        for old in (self.hover, cell):
            if old is not None:
                self.refresh_lines(HEADER_LINES + old[0])
        self.hover = cell
        row, col = cell if cell else (None, None)
        self.post_message(self.Hovered(self, row, col))

    def on_mouse_move(self, event: events.MouseMove) -> None:
        self._set_hover(self.cell_at(event.x, event.y))

    def on_leave(self, event: events.Leave) -> None:
        self._set_hover(None)

    def on_click(self, event: events.Click) -> None:
        cell = self.cell_at(event.x, event.y)
        if cell is None:
            return
        if cell == (self.cursor_row, self.cursor_col):
            self.action_choose()
        else:
            self.move_to(*cell)

    # -- drawing --------------------------------------------------------------------------

    def _boxes(self) -> list[tuple[Box, str]]:
        boxes = [(box, "heatmap--region") for box in self.frame.regions]
        if self.anchor is not None:
            boxes.append((box_of(self.anchor, (self.cursor_row, self.cursor_col)),
                          "heatmap--pending"))
        return boxes

    def render_line(self, y: int) -> Strip:
        if self._styles_changed:
            self._check_styles()
        if self._layout_width != self._content_width():  # the first frame comes before
            self._relayout()  # on_resize: fit the cells to the width it is drawn at
        width = self.size.width
        sx, sy = int(self.scroll_x), int(self.scroll_y)
        row = -1 if y < HEADER_LINES else sy + y - HEADER_LINES
        if row >= self.n_rows or not self.n_cols:
            return Strip.blank(width, self._base)
        cursor = self.cursor_col if row == self.cursor_row else -1
        hover = self.hover[1] if self.hover and self.hover[0] == row else -1
        pending = self._boxes()[-1][0] if self.anchor is not None else None
        key = (row, sx, width, cursor, hover, pending, self.cursor_col if row < 0 else 0)
        strip = self._strips.get(key)
        if strip is None:
            strip = self._render_row(row, sx, width)
            self._strips[key] = strip
        return strip

    def _render_row(self, row: int, sx: int, width: int) -> Strip:
        cw, gutter = self.cell_width, self.label_width
        first = sx // cw
        last = min(self.n_cols - 1, (sx + width - gutter) // cw)
        boxes = self._boxes()
        segments: list[Segment] = []
        for col in range(first, last + 1):
            segments.extend(self._cell_segments(row, col, boxes))
        body = Strip(segments).crop(sx - first * cw, sx - first * cw + width - gutter)
        head = Strip(self._gutter_segments(row, gutter, boxes if sx == 0 else []))
        return Strip.join([head, body]).crop_extend(0, width, self._base)

    def _component(self, name: str) -> Style:
        key = ("component", name)
        if key not in self._styles:
            self._styles[key] = self.get_component_rich_style(name, partial=True)
        return self._styles[key]

    @property
    def _base(self) -> Style:
        # rich_style walks the CSS of every ancestor: far too slow to ask once per cell
        style = self._styles.get(("base",))
        if style is None:
            style = self._styles[("base",)] = self.rich_style
        return style

    def _on(self, name: str) -> Style:
        """The widget's style with a component class on top."""
        key = ("on", name)
        if key not in self._styles:
            self._styles[key] = self._base + self._component(name)
        return self._styles[key]

    def _gutter_segments(self, row: int, gutter: int, boxes) -> list[Segment]:
        base = self._base
        if row < 0:
            return [Segment(" " * gutter, base)]
        name = "heatmap--cursor-label" if row == self.cursor_row else "heatmap--label"
        label = Segment(self.frame.row_labels[row].rjust(gutter - 2) + " ",
                        self._on(name))
        edge = Segment(" ", base)
        for (r0, r1, c0, _), box_name in boxes:
            if c0 == 0 and r0 <= row <= r1:
                edge = Segment("│", self._on(box_name))
        return [label, edge]

    def _cell_segments(self, row: int, col: int, boxes) -> list[Segment]:
        underline = None
        gap, gap_style = " ", self._base
        for (r0, r1, c0, c1), name in boxes:
            if c0 <= col <= c1 and (row == r1 or row == r0 - 1):
                underline = name
            if r0 <= row <= r1 and col == c0 - 1 or r0 <= row <= r1 and col == c1:
                gap, gap_style = "│", self._on(name)
        text, style = self._cell_text_style(row, col)
        if underline:
            style += self._component(underline) + UNDERLINE
            if gap == " " and any(c0 <= col < c1 for (_, _, c0, c1), n in boxes if n == underline):
                gap_style = self._on(underline) + UNDERLINE
        return [Segment(text, style), Segment(gap, gap_style)]

    def _cell_text_style(self, row: int, col: int) -> tuple[str, Style]:
        w = self.cell_width - 1
        if row < 0:
            name = "heatmap--cursor-label" if col == self.cursor_col else "heatmap--label"
            return self._headers[col].ljust(w)[:w], self._on(name)
        frame = self.frame
        value = float(frame.values[row, col])
        no_color = self.app.no_color
        if math.isnan(value):
            text, style = NAN_GLYPH * w, self._on("heatmap--nan")
        else:
            text = frame.text_of(value) if frame.show_values else ""
            if no_color and not text:
                text = shade_of(value, frame.vmin, frame.vmax, frame.ramp) * w
            style = self._value_style(value, no_color)
        if frame.faded is not None and frame.faded[row, col] and not frame.show_values:
            text = NS_GLYPH
        if frame.best == (row, col):
            text = _mark(text, w, frame.show_values)
        text = text.center(w)[:w]
        if (row, col) == (self.cursor_row, self.cursor_col):
            style += self._component("heatmap--cursor")
        elif self.hover == (row, col):
            style += self._component("heatmap--hover")
        return text, style

    def _value_style(self, value: float, no_color: bool) -> Style:
        frame = self.frame
        rgb = color_of(value, frame.vmin, frame.vmax, frame.ramp)
        key = ("cell", rgb, no_color)
        style = self._styles.get(key)
        if style is None:
            if no_color:
                style = self._base
            else:
                style = Style.from_color(_rich_color(ink_for(rgb)), _rich_color(rgb))
            self._styles[key] = style
        return style


def _mark(text: str, width: int, is_value: bool) -> str:
    """Put the best-cell star into a cell's text, keeping the value when it fits."""
    if is_value and text and len(text) < width:
        return text + BEST_GLYPH
    if len(text) >= width:  # a row of shade glyphs: star in the middle
        mid = width // 2
        return text[:mid] + BEST_GLYPH + text[mid + 1:width]
    return BEST_GLYPH


def _rich_color(rgb: tuple[int, int, int]):
    from rich.color import Color

    return Color.from_rgb(*rgb)


class ColorBar(Widget):
    """The colour scale beside the grid: ramp, tick values, and the NaN/best/region keys."""

    DEFAULT_CSS = """
    ColorBar { width: 11; height: 1fr; padding: 0 0 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title, self.ramp, self.vmin, self.vmax = "AUC", "Blues", 0.5, 1.0

    def configure(self, title: str, ramp: str, vmin: float, vmax: float) -> None:
        self.title, self.ramp, self.vmin, self.vmax = title, ramp, vmin, vmax
        self.refresh()

    def render(self) -> Text:
        keys = [(NAN_GLYPH * 2, "NaN")]
        if not self.ramp.startswith("RdBu"):  # a diff marks no best cell
            keys.append((BEST_GLYPH, "best"))
        else:
            keys.append((NS_GLYPH, "n.s."))
        steps = max(2, self.size.height - 2 - len(keys))
        text = Text(self.title[:10] + "\n", style="bold")
        span = self.vmax - self.vmin
        ticks = {0: self.vmax, steps // 2: self.vmin + span / 2, steps - 1: self.vmin}
        no_color = self.app.no_color
        for i in range(steps):
            value = self.vmax - (i + 0.5) * span / steps
            rgb = color_of(value, self.vmin, self.vmax, self.ramp)
            if no_color:
                text.append(shade_of(value, self.vmin, self.vmax, self.ramp) * 3)
            else:
                text.append("   ", style=Style(bgcolor=_rich_color(rgb)))
            label = ticks.get(i)
            text.append(f" {label:+.2f}" if label is not None and self.ramp.startswith("RdBu")
                        else f" {label:.2f}" if label is not None else "")
            text.append("\n")
        for glyph, name in keys:
            text.append(f"{glyph:<3}{name}\n", style="dim")
        return text


class BaselineStrip(Widget):
    """Beside the grid: the baselines a cell must beat, and the controls at its position."""

    DEFAULT_CSS = """
    BaselineStrip { width: 28; height: 1fr; padding: 0 0 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model, self.col = None, 0

    def show(self, model, col: int) -> None:
        self.model, self.col = model, col
        self.refresh()

    def render(self) -> Text:
        text = Text("Baselines (AUC)\n", style="bold")
        model = self.model
        if model is None or not model.baselines:
            reason = None if model is None else (model.grid.meta.get("baselines") or {}).get(
                "absent")
            text.append("none stored" if not reason else "absent", style="dim")
            return text
        rows = max(1, self.size.height - 6)
        for name, auc, _, _, _ in model.baselines[:rows]:
            rgb = color_of(auc, 0.5, 1.0, "Blues")
            swatch = Style(bgcolor=_rich_color(rgb)) if rgb and not self.app.no_color else None
            text.append("  ", style=swatch)
            text.append(f" {auc:.2f} {name[:19]}\n")
        position = model.column_name(self.col)
        text.append(f"\nat {position[:20]}:\n", style="bold")
        if 0 in model.layers:
            v = float(model.values("auc")[model.layers.index(0), self.col])
            text.append(f" layer 0   {'—' if math.isnan(v) else f'{v:.2f}'}\n")
        if model.null is not None:
            median, p95 = model.null
            v = float(p95[self.col])
            text.append(f" null p95  {'—' if math.isnan(v) else f'{v:.2f}'}\n")
        return text
