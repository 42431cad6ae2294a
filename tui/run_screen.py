"""The run page: a run's model, dataset, accuracy, categories and exact-answer gaps, its
examples (filtered by verdict and by text) and the grids made from it (Enter opens one).

A run still being written (``NAME.partial``) shows what it holds so far and reads it again
every few seconds while it grows; when it is finished the page switches to the bundle.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Input, Static

from probeheat.errors import UserError

from . import keys
from .commands import ScreenCommands
from .keybar import KeyBar
from .runinfo import (
    FILTERS,
    RunInfo,
    find_grids,
    finished_path,
    gold_text,
    grid_roots,
    has_exact_answer,
    label,
    missing_reason,
    read_partial,
    record_fields,
    shown_path,
)
from .samples import (
    ALL_TYPES,
    correct_of,
    error_type_rows,
    filter_label,
    fine_types,
    next_filter,
    samples_table,
    type_filters,
    type_letters,
    type_names,
    types_table,
)

REFRESH_S = 2.0  # how often a run still being written is read again
SUMMARY_ROWS = 5  # categories and reasons shown before "+N more"


def clip(text: object, width: int) -> str:
    """One line of at most ``width`` characters (… where cut)."""
    line = " ".join(str(text).split())
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def example_widths(width: int, extra: int = 0) -> tuple[int, ...]:
    """Widths of the examples table's text columns (question, answer, gold, exact answer)
    in a terminal ``width`` wide: what is left after the index and verdict columns (and
    ``extra`` columns of other ones)."""
    free = max(40, width - 6 - 2 - 6 * 2 - 2 - extra)  # index, verdict, padding, scrollbar
    question, answer, gold = int(free * 0.34), int(free * 0.32), int(free * 0.16)
    return question, answer, gold, free - question - answer - gold


def overview_text(info: RunInfo) -> Text:
    meta = info.meta
    model = meta.get("model")
    source = f" ({model['source']})" if isinstance(model, dict) and model.get("source") else ""
    acc, lo, hi = info.accuracy()
    text = Text()
    text.append("model    ", style="bold").append(
        f"{label(model, 'model_id', 'name', 'id')}{source} · {info.id or 'no id'}\n")
    parts = [label(meta.get("dataset"), "name", "id")]
    if meta.get("grader"):
        parts.append(f"grader {meta['grader']}")
    rule = [str(meta[k]) for k in ("exact_answer_policy", "exact_answer_rule") if meta.get(k)]
    if rule:
        parts.append(f"exact answers {'/'.join(rule)}")
    text.append("dataset  ", style="bold").append(" · ".join(parts) + "\n")
    text.append("accuracy ", style="bold")
    if info.n:
        text.append(f"{acc:.1%}", style="bold").append(
            f" of n {info.n} ({info.n_correct} correct), 95% interval {lo:.1%}–{hi:.1%} "
            "(Wilson)")
    else:
        text.append("no examples yet")
    samples = meta.get("samples")
    if isinstance(samples, dict) and samples.get("k"):
        settings = ", ".join(f"{k.replace('_', '-')} {samples[k]:g}"
                             for k in ("temperature", "top_p", "top_k") if k in samples)
        text.append("\nsamples  ", style="bold").append(
            f"K = {samples['k']} per question" + (f" ({settings})" if settings else "")
            + f", states at {len(samples.get('layers') or [])} layers x "
            + ", ".join(samples.get("positions") or []))
    if info.progress is not None:
        text.append(f"\nwriting  {info.progress.text} rows, {info.progress.writer}",
                    style="bold")
    return text


def categories_table(info: RunInfo) -> Table | Text:
    rows = info.categories()
    if not info.n:
        return Text("no examples written yet", style="italic")
    if not rows:
        return Text("no categories (the run has no category column)", style="italic")
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1), expand=False)
    for name, justify in (("category", "left"), ("n", "right"), ("accuracy", "right")):
        table.add_column(name, justify=justify, no_wrap=True, header_style="bold")
    shown = rows if len(rows) <= SUMMARY_ROWS else rows[: SUMMARY_ROWS - 1]
    for name, n, k in shown:
        table.add_row(clip(name, 22), str(n), f"{k / n:.0%}" if n else "")
    if len(shown) < len(rows):
        table.add_row(Text(f"+{len(rows) - len(shown)} more", style="italic"), "", "")
    return table


def reasons_table(info: RunInfo) -> Table | Text:
    rows = info.missing_reasons()
    if not info.n:
        return Text("")
    if not rows:
        return Text("every example has an exact answer", style="italic")
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1), expand=True)
    total = sum(n for _, n in rows)
    table.add_column("n", justify="right", no_wrap=True, header_style="bold")
    table.add_column(f"no exact answer ({total})", no_wrap=True, overflow="ellipsis",
                     header_style="bold")
    shown = rows if len(rows) <= SUMMARY_ROWS else rows[: SUMMARY_ROWS - 1]
    for reason, n in shown:
        table.add_row(str(n), reason)
    if len(shown) < len(rows):
        table.add_row("", Text(f"+{len(rows) - len(shown)} more reasons", style="italic"))
    return table


class RunScreen(Screen):
    COMMANDS = {ScreenCommands}
    BINDINGS = keys.bindings(keys.RUN)
    DEFAULT_CSS = """
    RunScreen #run-overview { height: auto; padding: 0 1; }
    RunScreen #run-summary { height: auto; max-height: 7; padding: 0 1; }
    RunScreen #run-categories { width: auto; min-width: 30; max-width: 50%; margin-right: 3; }
    RunScreen #run-types { width: auto; max-width: 50%; margin-right: 3; }
    RunScreen #run-reasons { width: 1fr; }
    RunScreen #run-grids-title { height: auto; padding: 0 1; }
    RunScreen #run-grids { height: auto; max-height: 4; }
    RunScreen #run-filters { height: 1; }
    RunScreen #run-filter { width: auto; padding: 0 1; }
    RunScreen #run-search { width: 1fr; height: 1; border: none; padding: 0 1; }
    RunScreen #run-examples { height: 1fr; }
    """

    def __init__(self, info: RunInfo, *, root: Path | None = None) -> None:
        super().__init__()
        self.info = info
        self.root = root
        self.kind = FILTERS[0]
        self.error_type = ALL_TYPES
        self.text = ""
        self.grids = []
        self.shown: list[dict] = []
        self.timer = None

    @property
    def run(self):
        """The run bundle (None while the run is still being written)."""
        return self.info.bundle

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        yield Static(id="run-overview")
        with Horizontal(id="run-summary"):
            yield Static(id="run-categories")
            yield Static(id="run-types")
            yield Static(id="run-reasons")
        yield Static(id="run-grids-title")
        yield DataTable(id="run-grids", cursor_type="row")
        yield DataTable(id="run-examples", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="run-filters"):  # below the table: tab goes grids, examples, search
            yield Static(id="run-filter")
            yield Input(placeholder="/ search: question, answer, gold, exact answer, id",
                        id="run-search")
        yield Static(id="status", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.show_info()
        self.load_grids()
        grids = self.query_one("#run-grids", DataTable)
        (grids if self.grids else self.query_one("#run-examples", DataTable)).focus()
        self.timer = self.set_interval(REFRESH_S, self.refresh_partial) \
            if self.info.partial else None

    # -- drawing ----------------------------------------------------------------------------

    def show_info(self) -> None:
        info = self.info
        where = shown_path(info.path)
        state = " still being written:" if info.partial else ""
        self.query_one("#title", Static).update(f" Run{state} {where}")
        self.query_one("#run-overview", Static).update(overview_text(info))
        self.query_one("#run-categories", Static).update(categories_table(info))
        self.query_one("#run-reasons", Static).update(reasons_table(info))
        types = self.query_one("#run-types", Static)
        types.display = info.sampled
        if info.sampled:
            types.update(types_table(info.records, fine=self.app.size.width >= 100))
        self.show_examples()

    def load_grids(self) -> None:
        table = self.query_one("#run-grids", DataTable)
        table.clear(columns=True)
        self.grids = [] if self.info.partial else find_grids(
            self.info.id, grid_roots(self.info.path, self.root))
        title = self.query_one("#run-grids-title", Static)
        if self.grids:
            title.update(Text(f"Grids made from this run ({len(self.grids)}; Enter opens):",
                              style="bold"))
            table.add_columns("grid", "best cell", "LxP", "rows")
            width = max(20, self.app.size.width - 48)
            for i, grid in enumerate(self.grids):
                table.add_row(clip(grid.label, width), grid.best, grid.shape, grid.role,
                              key=str(i))
        elif self.info.partial:
            title.update(Text("No grid yet: probe the run when it is finished", style="italic"))
        else:
            title.update(Text.assemble(("No grid from this run yet. Make one with:\n", "bold"),
                                       (f"probeheat probe {self.info.path} --out GRID",
                                        "reverse")))
        table.display = bool(self.grids)

    def show_examples(self) -> None:
        table = self.query_one("#run-examples", DataTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        sampled = self.info.sampled
        widths = example_widths(self.app.size.width, 2 * (5 + 2) if sampled else 0)
        table.add_column("#", width=5)
        table.add_column("ok", width=2)
        if sampled:  # correct samples of K, and the paper letters of the question's types
            table.add_column("C/K", width=5)
            table.add_column("types", width=5)
        for name, width in zip(("question", "answer", "gold", "exact answer"), widths,
                               strict=True):
            table.add_column(name, width=width)
        self.shown = self.info.examples(self.kind, self.text, self.error_type)
        for record in self.shown:
            exact = record.get("exact_answer") if has_exact_answer(record) else "—"
            extra = [correct_of(record), type_letters(record)] if sampled else []
            table.add_row(str(record["index"]), "✓" if record["correct"] else "✗", *extra,
                          clip(record.get("question", ""), widths[0]),
                          clip(record.get("answer", ""), widths[1]),
                          clip(gold_text(record), widths[2]), clip(exact or "", widths[3]),
                          key=str(record["index"]))
        if self.shown:
            table.move_cursor(row=min(cursor, len(self.shown) - 1))
        self.show_filter()

    def show_filter(self) -> None:
        kinds = " / ".join(f"[{k}]" if k == self.kind else k for k in FILTERS)
        matching = f", text {self.text!r}" if self.text else ""
        types = f" · t: [{filter_label(self.error_type)}]" if self.info.sampled else ""
        self.query_one("#run-filter", Static).update(Text.assemble(
            ("Examples ", "bold"), f"{len(self.shown)} of {self.info.n}{matching} · f: ",
            kinds, types))
        if not self.info.n:
            self.set_status("no example written yet: the page reads the run again as it grows")
        elif not self.shown:
            self.set_status("no example matches the filters (c clears them)")

    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text, layout=False)

    # -- events -----------------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table is self.focused:
            self.describe(event.data_table)

    def on_descendant_focus(self, event) -> None:
        self.describe(event.widget)

    def describe(self, widget) -> None:
        """The status line: what Enter would open from the focused part of the page."""
        if isinstance(widget, Input):
            self.set_status("type to filter the examples; Enter or Esc: back to them")
        elif not isinstance(widget, DataTable) or not widget.row_count:
            return
        elif widget.id == "run-grids":
            grid = self.grids[widget.cursor_row]
            rows = "its rows are this run's examples" if grid.role == "run" \
                else "its probes were trained on this run"
            self.set_status(f"{grid.name}: {rows}; Enter opens its heatmap")
        elif (record := self._record_at(widget.cursor_row)) is not None:
            exact = (f"exact answer {record.get('exact_answer')!r}" if has_exact_answer(record)
                     else missing_reason(record))
            types = f" · {type_names(record)}" if fine_types(record) is not None else ""
            self.set_status(f"#{record['index']} {record['id']} · {exact}{types} · Enter: "
                            "in full")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "run-grids":
            self.open_grid(int(event.row_key.value))
        else:
            self.open_example(int(event.row_key.value))

    def on_input_changed(self, event: Input.Changed) -> None:
        self.text = event.value.strip()
        self.show_examples()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.query_one("#run-examples", DataTable).focus()

    def on_resize(self, event) -> None:
        self.show_examples()

    def _record(self, index: int) -> dict | None:
        return next((r for r in self.shown if r["index"] == index), None)

    def _record_at(self, row: int) -> dict | None:
        return self.shown[row] if 0 <= row < len(self.shown) else None

    # -- actions ----------------------------------------------------------------------------

    def open_grid(self, index: int) -> None:
        grids = self.grids
        self.app.open_grids([grids[index].bundle],
                            candidates=lambda: [(g.name, g.path) for g in grids])

    def open_example(self, index: int) -> None:
        from .screens import TextScreen

        record = self._record(index)
        if record is None:
            return
        title, rows = record_fields(record)
        table = Table.grid(padding=(0, 2), expand=True)
        table.add_column(no_wrap=True, style="bold")
        table.add_column()
        for name, value in rows + error_type_rows(record):
            table.add_row(name, Text(value))
        parts = [Text(title, style="bold underline"), Text(""), table]
        if record.get("samples"):
            parts += [Text(""), Text(f"Sampled answers (K={len(record['samples'])})",
                                     style="bold underline"), samples_table(record)]
        self.app.push_screen(TextScreen(Group(*parts), screen_id="example"))

    def action_open(self) -> None:
        focused = self.focused
        if isinstance(focused, DataTable) and focused.row_count:
            focused.action_select_cursor()

    def action_cycle_filter(self) -> None:
        self.kind = FILTERS[(FILTERS.index(self.kind) + 1) % len(FILTERS)]
        self.show_examples()

    def action_cycle_type(self) -> None:
        self.error_type = next_filter(self.error_type, type_filters(self.info.records))
        self.show_examples()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "cycle_type":  # only runs with sampled answers have error types
            return self.info.sampled
        return True

    def action_search(self) -> None:
        self.query_one("#run-search", Input).focus()

    def action_clear_filters(self) -> None:
        self.kind, self.text, self.error_type = FILTERS[0], "", ALL_TYPES
        self.query_one("#run-search", Input).value = ""  # Changed redraws the table
        self.show_examples()

    def action_focus_grids(self) -> None:
        if self.grids:
            self.query_one("#run-grids", DataTable).focus()
        else:
            self.notify("no grid made from this run was found", severity="warning")

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.query_one("#run-examples", DataTable).focus()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_help(self) -> None:
        from .help import show_help

        show_help(self, self.BINDINGS)

    def action_reload(self) -> None:
        if self.info.partial:
            self.refresh_partial(force=True)
            return
        self.load_grids()
        self.notify("looked for grids again")

    def refresh_partial(self, force: bool = False) -> None:
        """Read the run in progress again; switch to the bundle once it is finished."""
        if not self.info.partial:
            return
        path = self.info.path
        try:
            info = read_partial(path)
        except UserError as exc:
            done = finished_path(path)
            if (done / "manifest.json").exists():
                self.switch_to_bundle(done)
            elif force:
                self.notify(exc.line(), severity="warning")
            return
        if force or info.n != self.info.n or info.progress.writer != self.info.progress.writer:
            self.info = info
            self.show_info()

    def switch_to_bundle(self, path: Path) -> None:
        from probeheat.bundle import open_run

        try:
            self.info = RunInfo.from_bundle(open_run(path))
        except UserError as exc:
            self.notify(exc.line(), severity="error", timeout=8)
            return
        if self.timer is not None:
            self.timer.stop()
        self.notify(f"the run is finished: {shown_path(path)}")
        self.show_info()
        self.load_grids()
