"""The browser: every bundle under a folder, one row each; Enter opens the selected one."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from .commands import ScreenCommands
from .model import BundleEntry, find_bundles

COLUMNS = ("kind", "name", "model", "dataset", "examples", "accuracy", "best cell", "date")


class BrowserScreen(Screen):
    COMMANDS = {ScreenCommands}
    BINDINGS = [
        Binding("enter", "open", "Open", id="browser.open",
                tooltip="Open the selected bundle (grids as a heatmap)"),
        Binding("space", "mark", "Mark", id="browser.mark",
                tooltip="Mark grids to open together as tabs"),
        Binding("o", "open_marked", "Open marked", id="browser.open-marked",
                tooltip="Open the marked grids as tabs"),
        Binding("f5", "rescan", "Rescan", id="browser.rescan",
                tooltip="Look for bundles under the folder again"),
        Binding("q", "app.quit", "Quit", id="browser.quit"),
    ]

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.entries: list[BundleEntry] = []
        self.marked: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Static(f" Bundles under {self.root}", id="title", markup=False)
        yield DataTable(cursor_type="row", zebra_stripes=True)
        yield Static(id="status", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.action_rescan()

    def action_rescan(self) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns(*COLUMNS)
        self.entries = find_bundles(self.root)
        self.marked.clear()
        for i, entry in enumerate(self.entries):
            table.add_row(*self._cells(entry), key=str(i))
        if not self.entries:
            self.set_status(f"no bundles under {self.root}: make one with "
                            "`probeheat run ... --out DIR`, or pass a folder that holds some")
        else:
            self.show_entry(0)
        table.focus()

    def _cells(self, entry: BundleEntry) -> tuple[str, ...]:
        mark = "+" if self.entries.index(entry) in self.marked else " "
        return (mark + entry.kind, entry.name, entry.model, entry.dataset, entry.examples,
                entry.accuracy, entry.best, entry.date)

    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text, layout=False)

    def show_entry(self, index: int) -> None:
        entry = self.entries[index]
        if entry.error:
            self.set_status(entry.error)
        elif entry.kind == "run":
            self.set_status(f"{entry.name}: run bundle; Enter shows it and how to make its grid")
        elif entry.kind == "grid":
            self.set_status(f"{entry.name}: Enter opens the heatmap; space marks it for tabs")
        else:
            self.set_status(f"{entry.name}: {entry.kind} bundle")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key is not None and event.row_key.value is not None:
            self.show_entry(int(event.row_key.value))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.open_entry(int(event.row_key.value))

    def current(self) -> int | None:
        table = self.query_one(DataTable)
        return table.cursor_row if self.entries else None

    def action_open(self) -> None:
        if (index := self.current()) is not None:
            self.open_entry(index)

    def open_entry(self, index: int) -> None:
        entry = self.entries[index]
        if entry.error:
            self.notify(entry.error, severity="error", timeout=8)
        elif entry.kind == "grid":
            self.app.open_grids([entry.bundle], candidates=self.grid_candidates)
        elif entry.kind == "run":
            self.app.open_run(entry.bundle)
        else:
            self.notify(f"{entry.name}: {entry.kind} bundles have no heatmap; "
                        "use `probeheat export` for them", severity="warning")

    def action_mark(self) -> None:
        index = self.current()
        if index is None or self.entries[index].kind != "grid":
            self.notify("only grids can be marked for tabs", severity="warning")
            return
        self.marked ^= {index}
        table = self.query_one(DataTable)
        table.update_cell_at((index, 0), self._cells(self.entries[index])[0])
        table.move_cursor(row=min(index + 1, len(self.entries) - 1))

    def action_open_marked(self) -> None:
        if not self.marked:
            self.notify("mark grids with space first", severity="warning")
            return
        grids = [self.entries[i].bundle for i in sorted(self.marked)]
        self.app.open_grids(grids, candidates=self.grid_candidates)

    def grid_candidates(self) -> list[tuple[str, Path]]:
        return [(e.name, e.path) for e in self.entries if e.kind == "grid"]
