"""The detail of one grid cell (Enter on the heatmap), and a question's sampled answers.

For a grid whose run has sampled answers the detail lists every test example of the cell
(highest score first) and filters them by error type; Enter on one shows its samples with
their grades, exact answers and, where the run kept the samples' states at the cell, each
sample's score from the cell's probe (refitted in a worker thread: it imports torch).
"""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from probeheat.errors import UserError

from . import keys
from .keybar import KeyBar
from .model import Example, GridModel, cell_detail
from .run_screen import clip
from .samples import (
    ALL_TYPES,
    cannot_score,
    correct_of,
    error_type_rows,
    filter_label,
    keep_type,
    next_filter,
    samples_table,
    type_filters,
    type_letters,
    type_names,
)
from .screens import PickScreen, TextScreen, detail_text, dialog_css, label_text


class DetailScreen(ModalScreen):
    """Values, intervals, tests and examples of one cell; for runs with samples, every test
    example with a type filter, and the way to each one's sampled answers."""

    BINDINGS = keys.bindings(keys.DETAIL)
    DEFAULT_CSS = dialog_css("DetailScreen") + """
    DetailScreen #detail-box { padding: 1 2 0 2; }
    DetailScreen #detail-body { height: 1fr; }
    DetailScreen #detail-box.sampled #detail-body { height: auto; max-height: 45%; }
    DetailScreen #detail-filter, DetailScreen #detail-status { height: 1; }
    DetailScreen #detail-examples { height: 1fr; }
    """

    def __init__(self, model: GridModel, row: int, col: int, metric: str, *,
                 root=None) -> None:
        super().__init__(id="detail")
        self.model, self.metric = model, metric
        self.detail = cell_detail(model, row, col)
        self.type = ALL_TYPES
        ranked = self.detail.ranked
        self.filters = type_filters([e.record for e in ranked]) if ranked else (ALL_TYPES,)
        self.shown: list[Example] = []
        cell = (self.detail.layer, self.detail.position)
        self.steers = [s for s in model.steers(root) if (s.layer, s.position) == cell]

    @property
    def sampled(self) -> bool:
        return bool(self.detail.ranked)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide" + (" sampled" if self.sampled else ""),
                      id="detail-box"):
            with VerticalScroll(id="detail-body"):
                yield Static(self.body())
            if self.sampled:
                yield Static(id="detail-filter")
                yield DataTable(id="detail-examples", cursor_type="row", zebra_stripes=True)
                yield Static(id="detail-status", markup=False)
        yield KeyBar()

    def body(self):
        text = detail_text(self.detail, self.metric, tables=not self.sampled)
        if not self.steers:
            return text
        lines = [Text(f"Steering results at this cell ({len(self.steers)}; s opens them):",
                      style="bold")]
        lines += [Text(f"{s.path.name}: {s.verdict}") for s in self.steers]
        return Group(text, *lines)

    def on_mount(self) -> None:
        if self.sampled:
            self.show_examples()
            self.query_one("#detail-examples", DataTable).focus()
        else:
            self.query_one("#detail-body").focus()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cycle_type":
            return self.sampled
        if action == "open_steer":
            return bool(self.steers)
        return True

    # -- the examples ---------------------------------------------------------------------

    def show_examples(self) -> None:
        table = self.query_one("#detail-examples", DataTable)
        table.clear(columns=True)
        short = ("incorrect", "correct") if self.detail.error_type is None \
            else ("has type", "other")
        free = max(30, int(self.app.size.width * 0.9) - 6 - 8 - 9 - 9 - 5 - 2 * 6 - 2)
        widths = (free * 5 // 9, free - free * 5 // 9)
        for name, width in (("log-odds", 8), ("label", 9), ("types", 9), ("C/K", 5),
                            ("question", widths[0]), ("model answer", widths[1])):
            table.add_column(name, width=width)
        self.shown = [e for e in self.detail.ranked if keep_type(e.record, self.type)]
        for i, ex in enumerate(self.shown):
            table.add_row(f"{ex.score:.3f}", label_text(ex.label, short),
                          type_letters(ex.record), correct_of(ex.record),
                          clip(ex.question, widths[0]), clip(ex.answer, widths[1]), key=str(i))
        kinds = f"[{filter_label(self.type)}]"
        self.query_one("#detail-filter", Static).update(Text.assemble(
            ("Test examples ", "bold"), f"{len(self.shown)} of {len(self.detail.ranked)}, "
            f"highest score first · t: {kinds} · Enter: sampled answers"))
        if not self.shown:
            self.set_status("no test example of this type")

    def set_status(self, text: str) -> None:
        self.query_one("#detail-status", Static).update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is None or event.row_key.value is None:
            return
        ex = self.shown[int(event.row_key.value)]
        rec = ex.record or {}
        self.set_status(f"#{ex.row} {rec.get('id', '?')} · {type_names(rec)} · "
                        f"{correct_of(rec)} samples correct")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_samples(self.shown[int(event.row_key.value)])

    def open_samples(self, example: Example) -> None:
        self.app.push_screen(SamplesScreen(self.model, example, self.detail.layer,
                                           self.detail.position))

    # -- actions --------------------------------------------------------------------------

    def action_choose(self) -> None:
        table = self.query("#detail-examples")
        if table and table.first().row_count:
            self.open_samples(self.shown[table.first().cursor_row])
        else:
            self.dismiss(None)

    def action_cycle_type(self) -> None:
        self.type = next_filter(self.type, self.filters)
        self.show_examples()

    def action_open_steer(self) -> None:
        steers = self.steers
        if len(steers) == 1:
            self.app.open_steer_path(steers[0].path)
            return

        def done(index: int | None) -> None:
            if index is not None:
                self.app.open_steer_path(steers[index].path)

        self.app.push_screen(PickScreen("Steering results at this cell",
                                        [str(s.path) for s in steers]), done)

    def action_close(self) -> None:
        self.dismiss(None)

    def action_help(self) -> None:
        from .help import show_help

        show_help(self, self.BINDINGS)


class SamplesScreen(TextScreen):
    """One question of a cell: its greedy answer and score, its error type, and its sampled
    answers with their grades and (when the samples have the cell) the probe's scores."""

    def __init__(self, model: GridModel, example: Example, layer: int, position: str) -> None:
        self.model, self.example = model, example
        self.cell_layer, self.cell_position = layer, position
        self.scores = None
        self.note = ""
        super().__init__(Text(""), screen_id="samples")

    @property
    def cell(self) -> str:
        return f"L{self.cell_layer} {self.cell_position}"

    def on_mount(self) -> None:
        layer, position = self.cell_layer, self.cell_position
        reason = cannot_score(self.model.run(), self.model.grid, layer, position)
        cached = None if reason else self.model.cached_sample_scores(layer, position)
        if reason:
            self.note = f"no probe scores for the samples: {reason}"
        elif cached is not None:
            self.set_scores(*cached)
            return
        else:
            self.note = (f"probe scores at L{layer} {position}: refitting the "
                         "grid's probe ...")
            self.notify(f"refitting the probe at L{layer} {position} to score the "
                        "samples ...", timeout=4)
            self.refit()
        self.redraw()

    @work(thread=True, exclusive=True, group="refit")
    def refit(self) -> None:
        try:
            scores, diff = self.model.sample_scores(self.cell_layer, self.cell_position)
        except UserError as exc:
            self.app.call_from_thread(self.failed, exc.line())
            return
        except Exception as exc:  # a failed refit must not take the viewer down
            self.app.call_from_thread(self.failed, f"refitting the probe failed ({exc})")
            return
        self.app.call_from_thread(self.set_scores, scores, diff)

    def failed(self, line: str) -> None:
        self.note = f"no probe scores for the samples: {line}"
        if self.is_attached:
            self.notify(line, severity="error", timeout=8)
            self.redraw()

    def set_scores(self, scores, diff: float) -> None:
        row = self.example.row
        self.scores = scores[row] if 0 <= row < len(scores) else None
        what = "an error" if self.model.error_type is None else \
            f"error type {self.model.error_type}"
        self.note = (f"log-odds of {what} at {self.cell}, from the grid's "
                     "probe refitted on its first split's training questions (its test "
                     f"scores within {diff:.2g} of the grid's); — : the sample lacks the "
                     "position")
        if self.is_attached:
            self.redraw()

    def redraw(self) -> None:
        self.query_one(Static).update(self.content())

    def content(self) -> Group:
        ex, rec = self.example, self.example.record or {}
        head = Table.grid(padding=(0, 2), expand=True)
        head.add_column(no_wrap=True, style="bold")
        head.add_column()
        verdict = "correct" if rec.get("correct") else "wrong"
        head.add_row("question", Text(str(rec.get("question", "?"))))
        head.add_row("greedy answer", Text(f"{str(rec.get('answer', '?')).strip()}  "
                                           f"({verdict})"))
        head.add_row("probe score", Text(f"{ex.score:.3f} at {self.cell} "
                                         f"(the grid's stored test score; label: "
                                         f"{self.model.label_words[1 - ex.label]})"))
        for name, value in error_type_rows(rec):
            head.add_row(name, Text(value))
        samples = rec.get("samples") or []
        return Group(Text(f"#{rec.get('index', ex.row)} · {rec.get('id', '?')}",
                          style="bold underline"), Text(""), head, Text(""),
                     Text(f"Sampled answers (K={len(samples)})", style="bold underline"),
                     Text(self.note, style="italic"), samples_table(rec, self.scores))
