"""The heatmap screen: one or more grids (as tabs), colour bar, status line and actions."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Static

from probeheat.bundle import open_grid
from probeheat.bundle.grid import METRIC_RANGES
from probeheat.errors import UserError

from . import keys
from .commands import ScreenCommands
from .heatmap import BaselineStrip, Box, ColorBar, HeatFrame, HeatmapView, box_of
from .keybar import KeyBar
from .model import GridModel, diff_values
from .screens import PickScreen, PromptScreen, TextScreen

RANGE_STEP = 0.05
DIFF_SPAN = 0.1
GAIN_SPAN = 0.25  # gain_layer0 / gain_baseline are drawn on -0.25..+0.25
# METRIC_RANGES (bundle/grid.py): colour ranges of metrics that do not live in 0.5..1 (the
# user's range is for AUC-like ones), the same as the figures'
STRIP_MIN_WIDTH = 110  # narrower terminals need the strip's 28 columns for the grid


@dataclass
class GridState:
    """What a tab remembers: the grid and how it is being looked at."""

    model: GridModel
    metric: str
    vmin: float = 0.5
    vmax: float = 1.0
    show_values: bool = False
    regions: list[Box] = field(default_factory=list)
    cursor: tuple[int, int] = (0, 0)
    diff: GridModel | None = None
    diff_span: float = DIFF_SPAN
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # by metric
    start: tuple[float, float] = (0.5, 1.0)  # the range the viewer was started with

    def __post_init__(self) -> None:
        self.start = (self.vmin, self.vmax)
        if self.start == (0.5, 1.0) and self.metric in METRIC_RANGES:
            self.vmin, self.vmax = METRIC_RANGES[self.metric]

    def switch_metric(self, metric: str) -> None:
        """Change metric; each metric keeps its own colour range (ECE and recall start on
        theirs, METRIC_RANGES, the others on the range the viewer was started with)."""
        self.ranges[self.metric] = (self.vmin, self.vmax)
        self.metric = metric
        self.vmin, self.vmax = self.ranges.get(metric) or METRIC_RANGES.get(metric) \
            or self.start


class HeatmapScreen(Screen):
    COMMANDS = {ScreenCommands}
    BINDINGS = keys.bindings(keys.HEATMAP)

    def __init__(self, models: list[GridModel], *, metric: str | None = None, vmin: float = 0.5,
                 vmax: float = 1.0, candidates=None) -> None:
        super().__init__()
        self.states = [GridState(m, metric if metric in m.metrics else _first_metric(m),
                                 vmin, vmax) for m in models]
        self.active = 0
        self.missing_metric = [s.model.name for s in self.states
                               if metric and metric not in s.model.metrics]
        self.requested_metric = metric
        # other grids on offer for a diff: a callable returning [(label, path)], e.g. the browser's
        self.candidates = candidates or (lambda: [])

    @property
    def state(self) -> GridState:
        return self.states[self.active]

    @property
    def view(self) -> HeatmapView:
        return self.query_one(HeatmapView)

    def compose(self) -> ComposeResult:
        yield Static(id="title", markup=False)
        if len(self.states) > 1:
            from textual.widgets import Tab, Tabs  # several grids only

            yield Tabs(*[Tab(s.model.tab_name, id=f"grid-{i}")
                         for i, s in enumerate(self.states)])
        with Horizontal(id="grid-area"):
            yield HeatmapView()
            yield ColorBar()
            yield BaselineStrip()
        yield Static(id="status", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one(BaselineStrip).display = self.app.size.width >= STRIP_MIN_WIDTH
        self.view.on_cursor_move = self.cursor_moved
        self.show_state()
        if self.missing_metric:
            self.notify(f"{', '.join(self.missing_metric)}: no metric "
                        f"{self.requested_metric!r}; showing {self.state.metric} "
                        "(m switches metric)", severity="warning", timeout=8)
        self.view.focus()

    # -- drawing --------------------------------------------------------------------------

    def frame_of(self, state: GridState) -> HeatFrame:
        model = state.model
        common = dict(row_labels=[str(x) for x in model.layers], col_names=model.positions,
                      show_values=state.show_values, regions=tuple(state.regions))
        if state.diff is not None:
            values = diff_values(model, state.diff, state.metric)
            tests = model.comparison(state.diff) if state.metric == "auc" else None
            return HeatFrame(values, ramp="RdBu_r", vmin=-state.diff_span, vmax=state.diff_span,
                             diff=True, faded=None if tests is None
                             else model.take(tests.not_significant()), **common)
        values = model.values(state.metric)
        if state.metric.startswith("gain_"):  # a difference: centred on 0, like a diff
            return HeatFrame(values, ramp="RdBu_r", vmin=-GAIN_SPAN, vmax=GAIN_SPAN, diff=True,
                             best=model.best(state.metric), **common)
        ramp = "Blues_r" if model.lower_is_better(state.metric) else "Blues"
        return HeatFrame(values, ramp=ramp, vmin=state.vmin, vmax=state.vmax,
                         best=model.best(state.metric), **common)

    def show_state(self) -> None:
        state = self.state
        frame = self.frame_of(state)
        self.view.set_frame(frame)
        self.view.move_to(*state.cursor)
        bar = self.query_one(ColorBar)
        title = state.metric.upper() + (" A-B" if state.diff is not None else "")
        bar.configure(title, frame.ramp, frame.vmin, frame.vmax)
        self.query_one(BaselineStrip).show(state.model, state.cursor[1])
        self.update_title()
        self.update_status()

    def update_title(self) -> None:
        state = self.state
        model = state.model
        predicts = f" · {model.predicts}" if model.error_type else ""
        heads = ""
        if model.heads is not None:
            where = model.heads["positions"]
            heads = (f" · {model.head_position} (p: {where.index(model.head_position) + 1}/"
                     f"{len(where)})")
        text = f" {model.title}{predicts}{heads} · {state.metric} · range {self._range_text()}"
        if state.diff is not None:
            text += f" · diff vs {state.diff.name}"
        best = model.best(state.metric)
        if best is not None and state.diff is None:
            value = model.values(state.metric)[best]
            shown = f"h{best[1]}" if model.heads else model.column_name(best[1])
            text += f" · best {value:.3f} L{model.layers[best[0]]} {shown}"
        if state.regions:
            text += f" · {len(state.regions)} region(s)"
        self.query_one("#title", Static).update(text, layout=False)

    def _range_text(self) -> str:
        state = self.state
        if state.diff is not None:
            return f"±{state.diff_span:.2f}"
        if state.metric.startswith("gain_"):
            return f"±{GAIN_SPAN:.2f}"
        return f"{state.vmin:.2f}-{state.vmax:.2f}"

    def update_status(self, cell: tuple[int, int] | None = None) -> None:
        state, view = self.state, self.view
        row, col = cell or (view.cursor_row, view.cursor_col)
        model = state.model
        layer, position = model.layers[row], model.column_name(col)
        value = float(view.frame.values[row, col])
        parts = [f" L{layer}", position]
        if state.diff is not None:
            a = float(model.values(state.metric)[row, col])
            parts.append(f"A-B {_fmt(value, signed=True)} (A {_fmt(a)})")
            tests = model.comparison(state.diff) if state.metric == "auc" else None
            q = float(model.take(tests.q)[row, col]) if tests is not None else math.nan
            if not math.isnan(q):
                kind = "paired" if tests.paired else "unpaired"
                parts.append(f"q {q:.3f} ({kind} DeLong, {tests.correction})"
                             + (" n.s." if q >= 0.05 else ""))
        else:
            parts.append(f"{state.metric} {_fmt(value)}")
            interval = model.interval(state.metric, row, col)
            if interval:
                parts[-1] += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
            spread = model.spread(state.metric, row, col)
            if spread is not None:
                parts[-1] += f" ±{spread:.3f} over seeds"
        counts = model.counts
        if "n_test" in counts:
            parts.append(f"n {int(counts['n_test'][row, col])}")
        reason = model.reasons.get((layer, position))
        if math.isnan(value) and reason:
            parts.append(f"no probe: {reason}")
        if view.anchor is not None:
            parts.append("r: mark the other corner")
        self.query_one("#status", Static).update(" · ".join(parts), layout=False)

    # -- events ---------------------------------------------------------------------------

    def cursor_moved(self, row: int, col: int) -> None:
        self.state.cursor = (row, col)
        self.update_status()
        self.query_one(BaselineStrip).show(self.state.model, col)

    def on_heatmap_view_hovered(self, event: HeatmapView.Hovered) -> None:
        cell = None if event.row is None else (event.row, event.col)
        self.update_status(cell)

    def on_heatmap_view_cell_chosen(self, event: HeatmapView.CellChosen) -> None:
        self.open_detail(event.row, event.col)

    def on_tabs_tab_activated(self, event) -> None:  # Tabs.TabActivated
        index = int(event.tab.id.split("-")[1])
        if index != self.active:
            self.view.anchor = None
            self.active = index
            self.show_state()

    # -- actions --------------------------------------------------------------------------

    def open_detail(self, row: int, col: int) -> None:
        from .detail_screen import DetailScreen

        self.app.push_screen(DetailScreen(self.state.model, row, col, self.state.metric,
                                          root=getattr(self.app, "root", None)))

    def action_jump(self) -> None:
        from .model import match_head_jump, match_jump

        model = self.state.model

        def done(text: str | None) -> None:
            if not text:
                return
            if model.heads is not None:
                target = match_head_jump(text, model.layers, model.heads)
            else:
                target = match_jump(text, model.layers, model.positions)
            if target is None:
                what = "layer, head or position" if model.heads else "layer or position"
                self.notify(f"no {what} matches {text!r}", severity="warning")
            elif target[0] == "row":
                self.view.move_to(target[1], self.view.cursor_col)
            elif target[0] == "position":
                self.show_head_position(target[1])
            else:
                self.view.move_to(self.view.cursor_row, target[1])

        if model.heads is not None:
            prompt = ("Jump to a head (number), a layer (L and a number) or a position (name)",
                      "3, L2 or exact_answer_last", model.heads["positions"])
        else:
            prompt = ("Jump to a layer (number) or a position (name or prefix)",
                      "14 or exact_answer_last", model.positions)
        self.app.push_screen(PromptScreen(prompt[0], placeholder=prompt[1],
                                          suggestions=prompt[2]), done)

    def action_next_head_position(self, step: int) -> None:
        model = self.state.model
        if model.heads is None:
            return
        where = model.heads["positions"]
        self.show_head_position(where[(where.index(model.head_position) + step) % len(where)])

    def show_head_position(self, position: str) -> None:
        """Show the heads of another position of a head grid (regions are cleared: they
        belong to the position they were marked on)."""
        state = self.state
        state.model.set_head_position(position)
        state.regions.clear()
        self.view.anchor = None
        self.show_state()

    def check_action(self, action: str, parameters) -> bool | None:
        if action == "next_head_position":  # head grids only: hidden from the footer
            return self.state.model.heads is not None
        return True

    def action_toggle_baselines(self) -> None:
        strip = self.query_one(BaselineStrip)
        strip.display = not strip.display

    def on_resize(self, event) -> None:
        # the strip takes 24 columns: at 80 the grid needs them (b brings it back)
        self.query_one(BaselineStrip).display = event.size.width >= STRIP_MIN_WIDTH

    def action_toggle_values(self) -> None:
        self.state.show_values = not self.state.show_values
        self.show_state()

    def action_next_metric(self) -> None:
        state = self.state
        metrics = state.model.metrics
        state.switch_metric(metrics[(metrics.index(state.metric) + 1) % len(metrics)])
        if state.diff is not None and state.metric not in state.diff.metrics:
            self.notify(f"{state.diff.name} has no {state.metric}: diff stopped",
                        severity="warning")
            state.diff = None
        self.show_state()

    def action_range(self, direction: int) -> None:
        state = self.state
        if state.diff is not None:
            state.diff_span = max(RANGE_STEP, round(state.diff_span + direction * RANGE_STEP, 4))
        else:
            state.vmin = round(min(state.vmax - RANGE_STEP,
                                   state.vmin + direction * RANGE_STEP), 4)
        self.show_state()

    def action_range_top(self, direction: int) -> None:
        state = self.state
        if state.diff is not None:
            self.action_range(direction)
            return
        state.vmax = round(max(state.vmin + RANGE_STEP, state.vmax + direction * RANGE_STEP), 4)
        self.show_state()

    def action_region(self) -> None:
        view = self.view
        here = (view.cursor_row, view.cursor_col)
        if view.anchor is None:
            view.anchor = here
        else:
            self.state.regions.append(box_of(view.anchor, here))
            view.anchor = None
        self.show_state()

    def action_clear_regions(self) -> None:
        self.state.regions.clear()
        self.view.anchor = None
        self.show_state()

    def action_back(self) -> None:
        if self.view.anchor is not None:
            self.view.anchor = None
            self.show_state()
        elif len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_help(self) -> None:
        from .help import heatmap_help

        self.app.push_screen(TextScreen(heatmap_help(self, self.state.model.positions,
                                                     self.view.cell_width - 1),
                                        screen_id="help"))

    # -- diff -----------------------------------------------------------------------------

    def diff_candidates(self) -> list[tuple[str, object]]:
        """Other grids: open tabs first, then grids found by the browser."""
        here = self.state.model.grid.path.resolve()
        out: list[tuple[str, object]] = []
        seen = {here}
        for state in self.states:
            path = state.model.grid.path.resolve()
            if path not in seen:
                seen.add(path)
                out.append((f"{state.model.name} (open)", state.model))
        for label, path in self.candidates():
            if Path(path).resolve() not in seen:
                seen.add(Path(path).resolve())
                out.append((label, Path(path)))
        return out

    def action_diff(self) -> None:
        state = self.state
        if state.diff is not None:
            state.diff = None
            self.show_state()
            return
        options = self.diff_candidates()
        if not options:
            self.notify("no other grid to compare with: open two grids (probeheat view A B) "
                        "or start from a folder of bundles", severity="warning")
            return

        def done(index: int | None) -> None:
            if index is not None:
                self.start_diff(options[index][1])

        self.app.push_screen(PickScreen("Diff against (A = this grid, B = chosen)",
                                        [label for label, _ in options]), done)

    def start_diff(self, other) -> None:
        state = self.state
        try:
            model = other if isinstance(other, GridModel) else GridModel(open_grid(other))
            diff_values(state.model, model, state.metric)
        except UserError as exc:
            self.notify(exc.line(), severity="error", timeout=8)
            return
        state.diff = model
        self.show_state()
        from probeheat.probe.compare import other_models

        note = other_models(state.model.grid, model.grid)
        if note:
            self.notify(note, severity="warning", timeout=8)

    # -- export ---------------------------------------------------------------------------

    def action_export(self) -> None:
        state = self.state
        where = f".{state.model.head_position}" if state.model.heads else ""
        default = f"{state.model.name}{where}.{state.metric}.png"

        def done(text: str | None) -> None:
            if text:
                self.export(Path(text).expanduser())

        self.app.push_screen(PromptScreen("Export to (.png or .pdf)", value=default), done)

    def export_arguments(self) -> dict:
        state = self.state
        model = state.model
        name = str if model.heads is not None else model.column_name  # heads by number
        highlights = [(model.layers[r0], model.layers[r1], name(c0), name(c1))
                      for r0, r1, c0, c1 in state.regions]
        args = dict(metric=state.metric, vmin=state.vmin, vmax=state.vmax,
                    annotate=state.show_values, mark_best=state.diff is None,
                    highlights=tuple(highlights), title=model.title)
        if model.heads is not None:  # the heads of the position on screen
            args.update(position=model.head_position, xlabel="Head",
                        title=f"{model.title} · {model.head_position}")
        if state.diff is not None:
            args.update(diff=state.diff.grid, vmin=-state.diff_span, vmax=state.diff_span)
        return args

    def export(self, out: Path) -> None:
        if out.suffix.lower() not in (".png", ".pdf", ".svg"):
            self.notify(f"{out}: export writes .png, .pdf or .svg files", severity="error")
            return
        self._export(out, self.state.model.grid, self.export_arguments())

    @work(thread=True, exclusive=True, group="export")
    def _export(self, out: Path, grid, args: dict) -> None:
        # matplotlib is imported here, on first export, never at start-up.
        from probeheat.figures import Highlight, export_grid

        args["highlights"] = tuple(Highlight(*box) for box in args["highlights"])
        self.app.call_from_thread(self.notify, f"exporting {out} ...", timeout=2)
        try:
            written = export_grid(grid, out, **args)
        except UserError as exc:
            self.app.call_from_thread(self.notify, exc.line(), severity="error", timeout=10)
            return
        except Exception as exc:  # a failed export must not take the viewer down
            self.app.call_from_thread(self.notify, f"{out}: export failed ({exc})",
                                      severity="error", timeout=10)
            return
        self.app.call_from_thread(self.notify, f"wrote {written}", timeout=6)


def _first_metric(model: GridModel) -> str:
    return "auc" if "auc" in model.metrics else model.metrics[0]


def _fmt(value: float, signed: bool = False) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return f"{value:+.3f}" if signed else f"{value:.3f}"
