"""The footer of every screen: the screen's shown keys as "key Description" pairs, one line.

One widget that renders one line of text. Textual's ``Footer`` mounts a widget per key in a
scrolling container and composes them again once the bindings are known, which was about
a tenth of the viewer's start-up (benchmarks/view_startup.py). The look follows the
footer's theme variables; as in Textual's footer, a click on a key presses it and the
mouse over a key shows its help as a tooltip.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.style import Style
from rich.text import Text
from textual import events
from textual.widget import Widget

DIM = Style(dim=True)


@dataclass(frozen=True)
class Entry:
    key: str  # the key to press (Textual's name)
    display: str  # as the user types it
    description: str
    enabled: bool
    tooltip: str = ""  # shown while the mouse is over the key


class KeyBar(Widget, can_focus=False):
    """The screen's bindings with ``show=True``, in binding order, one entry per action;
    the command palette's key at the right end when the app offers the palette."""

    ALLOW_SELECT = False
    COMPONENT_CLASSES = {"keybar--key", "keybar--description"}
    DEFAULT_CSS = """
    KeyBar {
        dock: bottom;
        height: 1;
        color: $footer-foreground;
        background: $footer-background;
        text-wrap: nowrap;
        text-overflow: clip;
    }
    KeyBar > .keybar--key {
        color: $footer-key-foreground;
        background: $footer-key-background;
        text-style: bold;
    }
    KeyBar > .keybar--description {
        color: $footer-description-foreground;
        background: $footer-description-background;
    }
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[tuple[int, int, Entry]] = []

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen) -> None:
        if screen is self.screen:
            self.refresh()

    def entries(self) -> tuple[list[Entry], Entry | None]:
        """(the shown keys, the command palette's key or None)."""
        active = self.screen.active_bindings
        palette_key = self.app.COMMAND_PALETTE_BINDING if self.app.ENABLE_COMMAND_PALETTE else None
        shown, actions, palette = [], set(), None
        for key, (_node, binding, enabled, tooltip) in active.items():
            entry = Entry(binding.key, self.app.get_key_display(binding), binding.description,
                          enabled, tooltip or binding.tooltip or binding.description)
            if key == palette_key:
                palette = entry
            elif binding.show and binding.action not in actions:
                actions.add(binding.action)
                shown.append(entry)
        return shown, palette

    def render(self) -> Text:
        key_style = self.get_component_rich_style("keybar--key")
        text_style = self.get_component_rich_style("keybar--description")
        shown, palette = self.entries()
        out, self._spans = Text(no_wrap=True, end=""), []
        for entry in shown:
            self._append(out, entry, key_style, text_style)
        if palette is not None:  # at the right end, only where it fits
            pad = self.size.width - out.cell_len - len(palette.display) - len(palette.description) - 3
            if pad >= 1:
                out.append(" " * pad)
                out.append("▏", text_style + DIM)
                self._append(out, palette, key_style, text_style, left="")
        return out

    def _append(self, out: Text, entry: Entry, key_style, text_style, left: str = " ") -> None:
        start = out.cell_len
        if not entry.enabled:
            key_style, text_style = key_style + DIM, text_style + DIM
        out.append(f"{left}{entry.display} ", key_style)
        out.append(f"{entry.description} ", text_style)
        self._spans.append((start, out.cell_len, entry))

    def entry_at(self, x: int) -> Entry | None:
        return next((entry for start, end, entry in self._spans if start <= x < end), None)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        entry = self.entry_at(event.x)
        self.tooltip = entry.tooltip if entry is not None else None

    def on_leave(self, event: events.Leave) -> None:
        self.tooltip = None

    def on_click(self, event: events.Click) -> None:
        entry = self.entry_at(event.x)
        if entry is None:
            return
        if entry.enabled:
            self.app.simulate_key(entry.key)
        else:
            self.app.bell()
