"""Small screens: messages, prompts, pickers, help, cell detail and run metadata."""

from __future__ import annotations

import json

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Label, Static

from .model import CellDetail, Example

MIN_WIDTH, MIN_HEIGHT = 80, 24


class MessageScreen(Screen):
    """A whole-screen message for input the viewer cannot show (bad path, empty folder)."""

    BINDINGS = [Binding("escape", "back", "Back", id="message.back"),
                Binding("q", "app.quit", "Quit", id="message.quit")]

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self.title_text, self.lines = title, lines

    def compose(self) -> ComposeResult:
        with Vertical(id="message"):
            yield Label(self.title_text, id="message-title")
            yield Static("\n".join(self.lines), id="message-body", markup=False)
        yield Footer()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()


class TooSmallScreen(ModalScreen):
    """Covers everything while the terminal is smaller than the viewer needs."""

    BINDINGS = [Binding("q", "app.quit", "Quit", id="small.quit")]

    def compose(self) -> ComposeResult:
        yield Static(id="too-small")

    def on_mount(self) -> None:
        self.show_size(self.app.size)

    def show_size(self, size) -> None:
        width, height = size
        self.query_one("#too-small", Static).update(
            f"Make the terminal at least {MIN_WIDTH}x{MIN_HEIGHT}\n(now {width}x{height}); "
            "q quits")


class PromptScreen(ModalScreen[str | None]):
    """One line of input; Enter answers it, Escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="prompt.cancel")]

    def __init__(self, title: str, *, value: str = "", placeholder: str = "",
                 suggestions: list[str] | None = None) -> None:
        super().__init__()
        self.title_text, self.value, self.placeholder = title, value, placeholder
        self.suggestions = suggestions

    def compose(self) -> ComposeResult:
        from textual.suggester import SuggestFromList
        from textual.widgets import Input

        with Vertical(classes="dialog"):
            yield Label(self.title_text)
            suggester = (SuggestFromList(self.suggestions, case_sensitive=False)
                         if self.suggestions else None)
            yield Input(self.value, placeholder=self.placeholder, suggester=suggester)

    def on_input_submitted(self, event) -> None:
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class PickScreen(ModalScreen[int | None]):
    """Choose one of several labelled things (the grid to diff against)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="pick.cancel")]

    def __init__(self, title: str, labels: list[str]) -> None:
        super().__init__()
        self.title_text, self.labels = title, labels

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList

        with Vertical(classes="dialog"):
            yield Label(self.title_text)
            yield OptionList(*self.labels)

    def on_option_list_option_selected(self, event) -> None:
        self.dismiss(event.option_index)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TextScreen(ModalScreen):
    """Scrollable text (help, cell detail); any of Escape, Enter or q closes it."""

    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="text.close")]

    def __init__(self, body, *, screen_id: str) -> None:
        super().__init__(id=screen_id)
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Static(self.body)

    def action_close(self) -> None:
        self.dismiss(None)


def detail_text(detail: CellDetail, metric: str) -> Table:
    """The Enter screen of a cell: values with intervals, counts, and extreme examples."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column()
    grid.add_row(Text(f"Layer {detail.layer} · {detail.position}", style="bold"))
    for name, value in detail.values.items():
        line = Text(f"{name:<10} ", style="bold" if name == metric else "")
        line.append("NaN" if value != value else f"{value:.3f}")
        if name in detail.intervals:
            lo, hi = detail.intervals[name]
            line.append(f"  [{lo:.3f}, {hi:.3f}]")
        grid.add_row(line)
    if detail.spread is not None:
        grid.add_row(Text(f"spread over seeds ±{detail.spread:.3f}"))
    grid.add_row(Text(_counts_line(detail.counts)))
    for against, delta, p in detail.tests:
        shown = "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")
        grid.add_row(Text(f"vs {against}: Δ AUC {delta:+.3f}, paired DeLong p {shown}"))
    if detail.reason:
        grid.add_row(Text(f"no probe: {detail.reason}", style="bold"))
    if detail.examples_note:
        grid.add_row(Text(detail.examples_note, style="italic"))
    for title, examples in (("Highest error scores (probe: likely wrong)", detail.highest),
                            ("Lowest error scores (probe: likely right)", detail.lowest)):
        if examples:
            grid.add_row(Text(title, style="bold underline"))
            grid.add_row(_examples_table(examples))
    return grid


def _counts_line(counts: dict[str, int]) -> str:
    if "n_test" not in counts:
        return "no counts stored"
    n, pos = counts["n_test"], counts.get("n_test_pos", 0)
    share = f" ({pos / n:.0%})" if n else ""
    train = f" · train n {counts['n_train']}" if "n_train" in counts else ""
    return f"test n {n}: {pos} incorrect{share} / {n - pos} correct{train}"


def _examples_table(examples: list[Example]) -> Table:
    table = Table(show_edge=False, pad_edge=False, expand=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("label", no_wrap=True)
    table.add_column("question", ratio=3)
    table.add_column("model answer", ratio=2)
    for ex in examples:
        label = Text("incorrect", style="bold") if ex.label else Text("correct")
        table.add_row(f"{ex.score:.3f}", label, ex.question, ex.answer)
    return table


def run_text(run, probe_hint: str) -> Text:
    """A run bundle's metadata and the command that turns it into a grid."""
    meta = {k: v for k, v in run.meta.items() if k not in ("positions",)}
    text = Text(f"Run bundle {run.path}\n\n", style="bold")
    text.append(f"examples {run.meta.get('n_examples', '?')}, "
                f"correct {run.meta.get('n_correct', '?')}\n")
    text.append(f"positions: {', '.join(map(str, run.meta.get('positions', [])))}\n\n")
    text.append("This run has no grid yet. Make one with:\n", style="bold")
    text.append(f"  {probe_hint}\n\n", style="reverse")
    text.append(json.dumps(meta, indent=1, sort_keys=True, default=str)[:4000])
    return text


class RunScreen(Screen):
    BINDINGS = [Binding("escape", "back", "Back", id="run.back"),
                Binding("q", "app.quit", "Quit", id="run.quit")]

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run

    def compose(self) -> ComposeResult:
        hint = f"probeheat probe {self.run.path} --out GRID"
        with VerticalScroll(id="run-info"):
            yield Static(run_text(self.run, hint))
        yield Footer()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
