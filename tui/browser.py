"""The browser: every bundle under a folder, one row each; Enter opens the selected one.

Runs still being written (``NAME.partial``) are listed with their progress and read again
every few seconds while they grow.
"""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import DataTable, Static

from . import keys
from .commands import ScreenCommands
from .keybar import KeyBar
from .model import BundleEntry, find_bundles
from .runinfo import describe_partial, find_partials

COLUMNS = ("kind", "name", "model", "dataset", "examples", "accuracy", "best cell", "date")
REFRESH_S = 2.0  # how often runs still being written are read again


class BrowserScreen(Screen):
    COMMANDS = {ScreenCommands}
    BINDINGS = keys.bindings(keys.BROWSER)
    DEFAULT_CSS = "BrowserScreen DataTable { height: 1fr; }"

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.entries: list[BundleEntry] = []
        self.marked: set[int] = set()

    def compose(self) -> ComposeResult:
        yield Static(f" Bundles under {self.root}", id="title", markup=False)
        yield DataTable(cursor_type="row", zebra_stripes=True)
        yield Static(id="status", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.action_rescan()
        self.set_interval(REFRESH_S, self.refresh_partials)

    def scan(self) -> list[BundleEntry]:
        """Bundles and runs still being written, in folder order."""
        entries = find_bundles(self.root)
        for path in find_partials(self.root):
            entries.append(describe_partial(path, path.relative_to(self.root).as_posix()))
        return sorted(entries, key=lambda e: e.path.relative_to(self.root).parts
                      if e.path != self.root else ())

    def action_rescan(self, keep: Path | None = None) -> None:
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns(*COLUMNS)
        self.entries = self.scan()
        self.marked.clear()
        for i in range(len(self.entries)):
            table.add_row(*self._cells(i), key=str(i))
        if not self.entries:
            self.set_status(f"no bundles under {self.root}: make one with "
                            "`probeheat run ... --out DIR`, or pass a folder that holds some")
        else:
            paths = [e.path for e in self.entries]
            row = paths.index(keep) if keep in paths else 0
            table.move_cursor(row=row)
            self.show_entry(row)
        table.focus()

    def refresh_partials(self) -> None:
        """Read the runs still being written again; rescan when one has finished."""
        table = self.query_one(DataTable)
        for i, entry in enumerate(self.entries):
            if entry.kind != "partial":
                continue
            if not entry.path.is_dir():  # finished (renamed into place) or removed
                current = self.current()
                self.action_rescan(keep=self._finished(self.entries[current].path)
                                   if current is not None else None)
                return
            before = self._cells(i)
            self.entries[i] = describe_partial(entry.path, entry.name)
            for col, (old, new) in enumerate(zip(before, self._cells(i), strict=True)):
                if old != new:
                    table.update_cell_at((i, col), new)
            if self.current() == i:
                self.show_entry(i)

    @staticmethod
    def _finished(path: Path) -> Path:
        from .runinfo import PARTIAL, finished_path

        return finished_path(path) if path.name.endswith(PARTIAL) else path

    def _cells(self, index: int) -> tuple[str, ...]:
        entry = self.entries[index]
        mark = "+" if index in self.marked else " "
        return (mark + entry.kind, entry.name, entry.model, entry.dataset, entry.examples,
                entry.accuracy, entry.best, entry.date)

    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text, layout=False)

    def show_entry(self, index: int) -> None:
        entry = self.entries[index]
        if entry.error:
            self.set_status(entry.error)
        elif entry.note:
            self.set_status(entry.note)
        elif entry.kind == "run":
            self.set_status(f"{entry.name}: run bundle; Enter shows its run page (accuracy, "
                            "examples, grids)")
        elif entry.kind == "grid":
            self.set_status(f"{entry.name}: Enter opens the heatmap; space marks it for tabs")
        elif entry.kind == "selection":
            table = entry.bundle.meta["table"]
            self.set_status(f"{entry.name}: answers chosen by probe, {table['probe']['accuracy']:.3f}"
                            f" vs greedy {table['greedy']['accuracy']:.3f}; Enter shows the "
                            "table")
        elif entry.kind == "steer":
            self.set_status(f"{entry.name}: {entry.bundle.verdict}")
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
        elif entry.kind == "types":
            self.app.open_grids(entry.bundle, candidates=self.grid_candidates)
        elif entry.kind in ("run", "selection", "steer"):
            self.app.open_page(entry.bundle)
        elif entry.kind == "partial":
            self.app.open_partial(entry.path)
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
        table.update_cell_at((index, 0), self._cells(index)[0])
        table.move_cursor(row=min(index + 1, len(self.entries) - 1))

    def action_open_marked(self) -> None:
        if not self.marked:
            self.notify("mark grids with space first", severity="warning")
            return
        grids = [self.entries[i].bundle for i in sorted(self.marked)]
        self.app.open_grids(grids, candidates=self.grid_candidates)

    def action_help(self) -> None:
        from .help import show_help

        show_help(self, self.BINDINGS)

    def grid_candidates(self) -> list[tuple[str, Path]]:
        out = []
        for e in self.entries:
            if e.kind == "grid":
                out.append((e.name, e.path))
            elif e.kind == "types":  # each type's grid is on offer for a diff
                out += [(f"{e.name}/{g.path.name}", g.path) for g in e.bundle]
        return out
