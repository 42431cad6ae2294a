"""Every key of the viewer, in one table: the screens' bindings, the ? screen and
`probeheat view --help` are all made from it.

Standard library only at module level: `probeheat view --help` reads this table without
loading Textual. ``bindings`` imports Textual when a screen asks for its bindings.
"""

from __future__ import annotations

import textwrap
import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    """One binding: Textual key names (``"up,k"``), the action, a short and a long text.

    ``footer=False`` keeps a key out of the footer (which must fit 80 columns with Help
    and Quit in it); the ? screen and ``--help`` list it all the same.
    """

    keys: str
    action: str
    description: str
    id: str
    help: str = ""
    footer: bool = True

    @property
    def text(self) -> str:
        return self.help or self.description


HEATMAP_VIEW = (
    Key("up,k", "move(-1, 0)", "Up", "heatmap.up", footer=False),
    Key("down,j", "move(1, 0)", "Down", "heatmap.down", footer=False),
    Key("left,h", "move(0, -1)", "Left", "heatmap.left", footer=False),
    Key("right,l", "move(0, 1)", "Right", "heatmap.right", footer=False),
    Key("g", "first_layer", "First layer", "heatmap.first-layer", footer=False),
    Key("G", "last_layer", "Last layer", "heatmap.last-layer", footer=False),
    Key("pageup", "page(-1)", "Page up", "heatmap.page-up", footer=False),
    Key("pagedown", "page(1)", "Page down", "heatmap.page-down", footer=False),
    Key("home", "first_position", "First position", "heatmap.first-position", footer=False),
    Key("end", "last_position", "Last position", "heatmap.last-position", footer=False),
    Key("enter", "choose", "Detail", "heatmap.detail",
        "Detail of the cell: values, intervals, tests and examples"),
)

HEATMAP = (
    Key("slash", "jump", "Jump", "heatmap.jump",
        "Go to a layer (number) or a position (name or prefix); head grids: a head (number)"),
    Key("n", "toggle_values", "Values", "heatmap.values",
        "Show or hide the value (x100) in each cell", footer=False),
    Key("m", "next_metric", "Metric", "heatmap.metric", "Switch to the grid's next metric"),
    Key("p", "next_head_position(1)", "Position", "heatmap.head-position",
        "Head grids: show the heads of the next position", footer=False),
    Key("P", "next_head_position(-1)", "Previous position", "heatmap.head-position-back",
        "Head grids: show the heads of the previous position", footer=False),
    Key("left_square_bracket", "range(-1)", "Range -", "heatmap.range-down",
        "Lower the colour range's start", footer=False),
    Key("right_square_bracket", "range(1)", "Range +", "heatmap.range-up",
        "Raise the colour range's start", footer=False),
    Key("left_curly_bracket", "range_top(-1)", "Range top -", "heatmap.range-top-down",
        "Lower the colour range's end", footer=False),
    Key("right_curly_bracket", "range_top(1)", "Range top +", "heatmap.range-top-up",
        "Raise the colour range's end", footer=False),
    Key("d", "diff", "Diff", "heatmap.diff",
        "Colour by this grid minus another (press again to stop)"),
    Key("r", "region", "Region", "heatmap.region",
        "Mark a region: r at one corner, move, r at the other", footer=False),
    Key("x", "clear_regions", "Clear regions", "heatmap.clear-regions",
        "Remove all marked regions", footer=False),
    Key("e", "export", "Export", "heatmap.export",
        "Write the current view as a PNG or PDF figure"),
    Key("b", "toggle_baselines", "Baselines", "heatmap.baselines",
        "Show or hide the strip of baselines and controls beside the grid", footer=False),
    Key("question_mark", "help", "Help", "heatmap.help", "Help: every key of this screen"),
    Key("escape", "back", "Back", "heatmap.back", "Back to the previous screen", footer=False),
    Key("q", "app.quit", "Quit", "heatmap.quit"),
)

BROWSER = (
    Key("enter", "open", "Open", "browser.open",
        "Open the selected bundle: a grid (or error-type grids) as a heatmap, others as a page"),
    Key("space", "mark", "Mark", "browser.mark", "Mark grids to open together as tabs"),
    Key("o", "open_marked", "Open marked", "browser.open-marked",
        "Open the marked grids as tabs"),
    Key("f5", "rescan", "Rescan", "browser.rescan", "Look for bundles under the folder again"),
    Key("question_mark", "help", "Help", "browser.help", "Help: every key of this screen"),
    Key("q", "app.quit", "Quit", "browser.quit"),
)

RUN = (
    Key("enter", "open", "Open", "run.open",
        "Open the selected grid, or the selected example in full"),
    Key("f", "cycle_filter", "Filter", "run.filter",
        "Show all examples, the correct ones, the wrong ones, or those without an exact "
        "answer"),
    Key("t", "cycle_type", "Types", "run.types",
        "Only the examples of one error type (again: the next, then all; runs with samples)"),
    Key("slash", "search", "Search", "run.search",
        "Filter the examples by text (question, answer, gold, exact answer, id, category)"),
    Key("c", "clear_filters", "Clear filters", "run.clear", "Show every example again",
        footer=False),
    Key("g", "focus_grids", "Grids", "run.grids", "Go to the list of grids made from this run",
        footer=False),
    Key("f5", "reload", "Reload", "run.reload", "Read the run again (a running run grows)",
        footer=False),
    Key("question_mark", "help", "Help", "run.help", "Help: every key of this screen"),
    Key("escape", "back", "Back", "run.back", "Back to the previous screen (from the search "
        "box: back to the examples)", footer=False),
    Key("q", "app.quit", "Quit", "run.quit"),
)

DETAIL = (
    Key("t", "cycle_type", "Types", "detail.types",
        "Only the examples of one error type (again: the next, then all; runs with samples)"),
    Key("s", "open_steer", "Steer", "detail.steer",
        "Open the steering results (probeheat steer) of this grid at this cell"),
    Key("enter", "choose", "Samples", "detail.samples",
        "Runs with sampled answers: show the selected example's samples, their grades and "
        "the probe's scores; otherwise close", footer=False),
    Key("question_mark", "help", "Help", "detail.help", "Help: every key of this screen"),
    Key("escape", "close", "Close", "detail.close", "Close this window"),
    Key("q", "app.quit", "Quit", "detail.quit"),
)

SELECTION = (
    Key("g", "open_grid", "Grid", "selection.grid", "Open the grid whose probe chose"),
    Key("r", "open_run", "Run", "selection.run", "Open the run page of the sampled run"),
    Key("question_mark", "help", "Help", "selection.help", "Help: every key of this screen"),
    Key("escape", "back", "Back", "selection.back", "Back to the previous screen",
        footer=False),
    Key("q", "app.quit", "Quit", "selection.quit"),
)

STEER = (
    Key("g", "open_grid", "Grid", "steer.grid", "Open the grid whose probe was steered along"),
    Key("question_mark", "help", "Help", "steer.help", "Help: every key of this screen"),
    Key("escape", "back", "Back", "steer.back", "Back to the previous screen", footer=False),
    Key("q", "app.quit", "Quit", "steer.quit"),
)

MESSAGE = (
    Key("escape", "back", "Back", "message.back", "Back to the previous screen"),
    Key("question_mark", "help", "Help", "message.help", "Help: every key of this screen"),
    Key("q", "app.quit", "Quit", "message.quit"),
)

TEXT = (Key("escape,enter,q", "close", "Close", "text.close", "Close this window"),)
TOO_SMALL = (Key("q", "app.quit", "Quit", "small.quit"),)
PROMPT = (Key("escape", "cancel", "Cancel", "prompt.cancel"),)
PICK = (Key("escape", "cancel", "Cancel", "pick.cancel"),)
APP = (Key("ctrl+c", "quit", "Quit", "app.quit", footer=False),)

# Keys Textual itself provides on every screen, for the ? screen and --help.
EVERYWHERE = (
    ("tab", "Next part of the screen (the run page's tables and search box)"),
    ("ctrl+p", "Command palette: every action of the screen by name"),
    ("ctrl+c", "Quit"),
)

# What `probeheat view --help` lists, in this order.
SCREENS = (("browser", BROWSER), ("heatmap", HEATMAP_VIEW + HEATMAP), ("run page", RUN),
           ("cell detail", DETAIL), ("selection page", SELECTION), ("steer page", STEER),
           ("help and example windows", TEXT))

# Textual's display names (textual.keys.KEY_DISPLAY_ALIASES); tests check they agree.
DISPLAY_ALIASES = {"up": "↑", "down": "↓", "left": "←", "right": "→", "backspace": "⌫",
                   "escape": "esc", "enter": "⏎", "minus": "-", "space": "space",
                   "pagedown": "pgdn", "pageup": "pgup", "delete": "del"}
_UNICODE_NAMES = {"slash": "solidus", "backslash": "reverse_solidus", "at": "commercial_at",
                  "minus": "hyphen_minus", "plus": "plus_sign", "underscore": "low_line"}


def key_display(key: str) -> str:
    """One key as typed ("left_square_bracket" -> "[", "ctrl+p" -> "^p"), like Textual's
    ``App.get_key_display`` (which the screens use; this one serves --help)."""
    *modifiers, name = key.split("+")
    shown = DISPLAY_ALIASES.get(name)
    if shown is None:
        try:
            char = unicodedata.lookup(_UNICODE_NAMES.get(name, name).replace("_", " "))
        except KeyError:
            char = ""
        shown = char if char.isprintable() and char else name
    if "ctrl" in modifiers:
        modifiers.remove("ctrl")
        shown = f"^{shown}"
    return "+".join(modifiers + [shown])


def keys_display(keys: str, display=key_display) -> str:
    """Every key of a binding ("up,k" -> "↑ k")."""
    return " ".join(display(k.strip()) for k in keys.split(","))


def epilog() -> str:
    """The key list of `probeheat view --help`."""
    lines = ["keys (the ? screen of each view lists them too):"]
    rows = [(title, [(keys_display(k.keys), k.text) for k in keys]) for title, keys in SCREENS]
    rows.append(("everywhere", [(key_display(k), text) for k, text in EVERYWHERE]))
    for title, entries in rows:
        lines.append(f"  {title}:")
        for shown, text in entries:
            lines += textwrap.wrap(text, width=79, initial_indent=f"    {shown:<10} ",
                                   subsequent_indent=" " * 15)
    return "\n".join(lines)


def bindings(keys: tuple[Key, ...]) -> list:
    """Textual bindings for a screen's or widget's ``BINDINGS``."""
    from textual.binding import Binding

    return [Binding(k.keys, k.action, k.description, show=k.footer, id=k.id,
                    tooltip=k.help) for k in keys]
