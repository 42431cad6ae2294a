"""Small screens: messages, prompts, pickers, help and cell detail."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from . import keys
from .keybar import KeyBar
from .model import CellDetail, Example

MIN_WIDTH, MIN_HEIGHT = 80, 24


def dialog_css(screen: str) -> str:
    """The CSS of a modal screen whose content is a box with the class `dialog`."""
    return f"""
    {screen} {{ align: center middle; }}
    {screen} .dialog {{
        width: 70;
        height: auto;
        max-height: 90%;
        padding: 1 2;
        border: round $accent;
        background: $surface;
    }}
    {screen} .dialog.wide {{ width: 90%; height: 90%; }}
    """


class MessageScreen(Screen):
    """A whole-screen message for input the viewer cannot show (bad path, empty folder)."""

    BINDINGS = keys.bindings(keys.MESSAGE)
    DEFAULT_CSS = """
    MessageScreen #message { padding: 1 2; height: 1fr; }
    MessageScreen #message-title { text-style: bold; color: $error; margin-bottom: 1; }
    """

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self.title_text, self.lines = title, lines

    def compose(self) -> ComposeResult:
        with Vertical(id="message"):
            yield Label(self.title_text, id="message-title")
            yield Static("\n".join(self.lines), id="message-body", markup=False)
        yield KeyBar()

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_help(self) -> None:
        from .help import show_help

        show_help(self, self.BINDINGS)


class TooSmallScreen(ModalScreen):
    """Covers everything while the terminal is smaller than the viewer needs."""

    BINDINGS = keys.bindings(keys.TOO_SMALL)
    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; }
    TooSmallScreen #too-small {
        width: auto;
        height: auto;
        padding: 1 2;
        border: heavy $warning;
        text-style: bold;
    }
    """

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

    BINDINGS = keys.bindings(keys.PROMPT)
    DEFAULT_CSS = dialog_css("PromptScreen")

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

    BINDINGS = keys.bindings(keys.PICK)
    DEFAULT_CSS = dialog_css("PickScreen") + """
    PickScreen OptionList { height: auto; max-height: 16; }
    """

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

    BINDINGS = keys.bindings(keys.TEXT)
    DEFAULT_CSS = dialog_css("TextScreen")

    def __init__(self, body, *, screen_id: str) -> None:
        super().__init__(id=screen_id)
        self.body = body

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            yield Static(self.body)

    def action_close(self) -> None:
        self.dismiss(None)


def detail_text(detail: CellDetail, metric: str, *, tables: bool = True) -> Table:
    """The Enter screen of a cell: values with intervals, counts, and extreme examples
    (``tables=False``: without them, for the detail that lists every example instead).

    It takes the window's whole width, so that answers wrap only when they must.
    """
    grid = Table.grid(padding=(0, 1), expand=True)
    grid.add_column()
    grid.add_row(Text(f"Layer {detail.layer} · {detail.position}", style="bold"))
    width = max((len(name) for name in detail.values), default=0)
    for name, value in detail.values.items():
        line = Text(f"{name:<{width}} ", style="bold" if name == metric else "")
        line.append("NaN" if value != value else f"{value:.3f}")
        if name in detail.intervals:
            lo, hi = detail.intervals[name]
            line.append(f"  [{lo:.3f}, {hi:.3f}]")
        if name in detail.lower:
            line.append("  (lower is better)", style="italic")
        grid.add_row(line)
    if detail.spread is not None:
        grid.add_row(Text(f"spread over seeds ±{detail.spread:.3f}"))
    grid.add_row(Text(_counts_line(detail.counts, detail.words)))
    for against, delta, p in detail.tests:
        shown = "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")
        grid.add_row(Text(f"vs {against}: Δ AUC {delta:+.3f}, paired DeLong p {shown}"))
    if detail.reliability:
        grid.add_row(reliability_table(detail.reliability, detail.words[0]))
    if detail.reason:
        grid.add_row(Text(f"no probe: {detail.reason}", style="bold"))
    if detail.examples_note:
        grid.add_row(Text(detail.examples_note, style="italic"))
    if detail.highest or detail.lowest:
        grid.add_row(Text(f"Scores are the probe's log-odds (logit) that {_meaning(detail)}",
                          style="italic"))
    likely = "likely wrong" if detail.error_type is None else f"likely {detail.words[0]}"
    unlikely = "likely right" if detail.error_type is None else "likely another type"
    title = "error scores" if detail.error_type is None else "scores"
    for heading, examples in ((f"Highest {title} (log-odds; probe: {likely})", detail.highest),
                              (f"Lowest {title} (log-odds; probe: {unlikely})", detail.lowest)):
        if examples and tables:
            grid.add_row(Text(heading, style="bold underline"))
            grid.add_row(_examples_table(examples, detail.words))
    return grid


def reliability_table(bins: list[tuple[float, float, int]], positive: str) -> Group:
    """The cell's reliability curve, one column per non-empty bin: the probe's mean
    probability of label 1, the observed rate of label 1 and the test examples in the bin."""
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    table.add_column("", no_wrap=True, style="bold")
    for _ in bins:
        table.add_column("", justify="right", no_wrap=True)
    table.show_header = False
    table.add_row("mean p", *(f"{m:.2f}" for m, _, _ in bins))
    table.add_row("observed", *(f"{o:.2f}" for _, o, _ in bins))
    table.add_row("n", *(str(c) for _, _, c in bins))
    return Group(Text(f"Reliability (first seed's test split): the probe's mean probability "
                      f"of {positive} against the observed rate, per bin", style="bold"), table)


def _meaning(detail: CellDetail) -> str:
    if detail.error_type is None:
        return "the answer is wrong"
    return f"the question has error type {detail.error_type} (over its sampled answers)"


def _counts_line(counts: dict[str, int], words: tuple[str, str] = ("incorrect", "correct")
                 ) -> str:
    if "n_test" not in counts:
        return "no counts stored"
    n, pos = counts["n_test"], counts.get("n_test_pos", 0)
    share = f" ({pos / n:.0%})" if n else ""
    train = f" · train n {counts['n_train']}" if "n_train" in counts else ""
    return f"test n {n}: {pos} {words[0]}{share} / {n - pos} {words[1]}{train}"


def label_text(label: int, words: tuple[str, str] = ("incorrect", "correct")) -> Text:
    return Text(words[0], style="bold") if label else Text(words[1])


def _examples_table(examples: list[Example], words: tuple[str, str]) -> Table:
    # no ratios: columns get their natural width when it fits, and only the widest wraps
    table = Table(show_edge=False, pad_edge=False, expand=True)
    table.add_column("log-odds", justify="right", no_wrap=True)
    table.add_column("label", no_wrap=True)
    table.add_column("question", min_width=16)
    table.add_column("model answer", min_width=24)
    for ex in examples:
        table.add_row(f"{ex.score:.3f}", label_text(ex.label, words), ex.question, ex.answer)
    return table
