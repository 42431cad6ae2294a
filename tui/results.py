"""Pages of the bundles that summarise an experiment: a selection (`probeheat select`: the
probe choosing among sampled answers) and a steer sweep (`probeheat steer`: adding the
probe's direction to the residual stream).

The tables are built from the bundles' metadata and tensors with rich only, so tests can
check them without a terminal; the screens just lay them out.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from probeheat.bundle import open_bundle
from probeheat.errors import UserError

from . import keys
from .commands import ScreenCommands
from .keybar import KeyBar
from .runinfo import label, shown_path
from .samples import filter_label

METHODS = ("greedy", "random", "majority", "probe")


def linked(bundle, key: str, kind: str):
    """The bundle that ``meta[key]`` names (``{"id", "path"}``, path relative to this
    bundle's folder), if it is still there; a folder of that name beside this one is tried
    too. None when neither holds it."""
    ref = bundle.meta.get(key) or {}
    recorded = ref.get("path") if isinstance(ref, dict) else None
    if not isinstance(recorded, str) or not recorded:
        return None
    for candidate in (bundle.path / recorded, bundle.path.parent / Path(recorded).name):
        try:
            found = open_bundle(candidate)
        except UserError:
            continue
        if found.kind == kind and found.id == ref.get("id"):
            return found
    return None


def ref_text(bundle, key: str) -> str:
    """Where ``meta[key]`` points, as the user would type it."""
    ref = bundle.meta.get(key) or {}
    path = ref.get("path") if isinstance(ref, dict) else None
    if not path:
        return "?"
    return shown_path(Path(os.path.normpath(bundle.path / path)))


def _p(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


def _num(value, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(float(value), fmt)


def _line(text: Text, name: str, value: str) -> None:
    text.append(f"{name:<10}", style="bold").append(value + "\n")


# -- a selection ------------------------------------------------------------------------------

def selection_overview(bundle) -> Text:
    meta = bundle.meta
    cell, questions, samples = meta["cell"], meta["questions"], meta["samples"]
    text = Text()
    _line(text, "model", f"{label(meta.get('model'), 'model_id', 'name', 'id')} · dataset "
                         f"{label(meta.get('dataset'), 'name', 'id')}")
    _line(text, "run", ref_text(bundle, "run"))
    _line(text, "grid", ref_text(bundle, "grid"))
    refit = cell.get("refit_max_abs_diff")
    _line(text, "cell", f"L{cell['layer']} {cell['position']} ({cell.get('chosen', '?')}) · "
                        f"test AUC {_num(cell.get('test_auc'))} · refit within "
                        f"{_num(refit, '.2g')} of the grid's scores")
    settings = ", ".join(f"{k.replace('_', '-')} {samples[k]:g}"
                         for k in ("temperature", "top_p", "top_k") if k in samples)
    split = questions.get("split_seed")
    _line(text, "questions", f"{questions['n']} test questions of the grid's first split"
                             + (f" (seed {split})" if split is not None else "")
                             + f" · K = {samples['k']} samples each"
                             + (f" ({settings})" if settings else "")
                             + f" · {questions.get('no_scorable_sample', 0)} without a "
                             "scorable sample")
    text.rstrip()
    return text


def selection_table(bundle) -> Table:
    """greedy, random, majority, probe: accuracy, 95% interval, n, McNemar p vs greedy."""
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1), expand=False,
                  title="Accuracy of the answer each method picks", title_justify="left",
                  title_style="bold underline")
    for name, justify in (("method", "left"), ("accuracy", "right"), ("95% interval", "left"),
                          ("n", "right"), ("vs greedy", "right"), ("McNemar p", "right"),
                          ("how", "left")):
        table.add_column(name, justify=justify, no_wrap=name != "how", header_style="bold")
    rows = bundle.table
    for method in METHODS:
        row = rows[method]
        versus = "" if method == "greedy" else f"+{row.get('better', 0)} / -{row.get('worse', 0)}"
        table.add_row(method, f"{row['accuracy']:.3f}", f"[{row['lo']:.3f}, {row['hi']:.3f}]",
                      str(row["n"]), versus, "" if method == "greedy" else
                      _p(row.get("p_vs_greedy")), row.get("what", ""),
                      style="bold" if method == "probe" else None)
    return table


def by_type_table(bundle) -> Table | Text:
    """Each method's accuracy within the test questions of each error type (by_type)."""
    by_type = bundle.meta.get("by_type") or {}
    if not by_type:
        return Text("no accuracy by error type stored", style="italic")
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1), expand=False,
                  title="Accuracy by error type (test questions of each type)",
                  title_justify="left", title_style="bold underline")
    table.add_column("error type", no_wrap=True, header_style="bold")
    for name in ("n", *METHODS):
        table.add_column(name, justify="right", no_wrap=True, header_style="bold")
    for name, row in by_type.items():
        table.add_row(filter_label(name), str(row.get("n", "?")),
                      *(f"{row[m]:.0%}" if isinstance(row.get(m), int | float) else "—"
                        for m in METHODS))
    return table


def selection_notes(bundle) -> Text:
    meta = bundle.meta
    text = Text(style="dim")
    for key in ("interval", "paired_test"):
        if meta.get(key):
            text.append(f"{key.replace('_', ' ')}: {meta[key]}\n")
    text.rstrip()
    return text


# -- a steer sweep ----------------------------------------------------------------------------

def steer_overview(bundle) -> Text:
    meta = bundle.meta
    cell, questions = meta["cell"], meta["questions"]
    text = Text()
    text.append(bundle.verdict + "\n\n", style="bold")
    _line(text, "model", f"{label(meta.get('model'), 'model_id', 'name', 'id')} · dataset "
                         f"{label(meta.get('dataset'), 'name', 'id')}")
    _line(text, "run", ref_text(bundle, "run"))
    _line(text, "grid", ref_text(bundle, "grid"))
    _line(text, "cell", f"L{cell['layer']} {cell['position']} · grid AUC "
                        f"{_num(cell.get('grid_auc'))} · refit AUC {_num(cell.get('refit_auc'))}")
    _line(text, "added", f"{meta['at']}" + (f": {meta['at_meaning']}"
                                           if meta.get("at_meaning") else ""))
    if meta.get("alpha_unit"):
        _line(text, "alpha", meta["alpha_unit"])
    split = questions.get("split_seed")
    _line(text, "questions", f"{questions['n']} ({questions['set']}"
                             + (f", split seed {split}" if split is not None else "") + ")")
    text.rstrip()
    return text


def steer_table(bundle) -> Table:
    """One row per alpha x direction: accuracy with its interval, p against alpha 0, the
    share of answers changed, the probe's mean score of the new answers, the KL."""
    tensors = bundle.table()
    alphas, names = bundle.alphas, bundle.direction_names
    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1), expand=False,
                  title="Accuracy after steering, per alpha and direction", title_justify="left",
                  title_style="bold underline")
    for name, justify in (("alpha", "right"), ("direction", "left"), ("accuracy", "right"),
                          ("95% interval", "left"), ("p vs α=0", "right"),
                          ("changed", "right"), ("probe score", "right"), ("n", "right"),
                          ("KL", "right")):
        table.add_column(name, justify=justify, no_wrap=True, header_style="bold")
    for a, alpha in enumerate(alphas):
        for d, direction in enumerate(names):
            def cell(key, fmt=".3f", a=a, d=d):
                return _num(float(tensors[key][a, d]), fmt)
            table.add_row("0" if alpha == 0 else f"{alpha:+g}", direction, cell("accuracy"),
                          f"[{cell('accuracy_lo')}, {cell('accuracy_hi')}]",
                          _p(float(tensors["p_vs_unsteered"][a, d])), cell("changed", ".0%"),
                          cell("probe_score"), str(int(tensors["probe_n"][a, d])),
                          cell("kl", ".3g"), style="bold" if d == 0 else None,
                          end_section=d == len(names) - 1 and a < len(alphas) - 1)
    return table


# -- the screens ------------------------------------------------------------------------------

class ResultScreen(Screen):
    """A page of one bundle: a title, a scrolling body of tables, a status line."""

    COMMANDS = {ScreenCommands}
    DEFAULT_CSS = """
    ResultScreen #result-body { height: 1fr; padding: 0 1; }
    ResultScreen .result-part { margin-bottom: 1; }
    """
    what = "bundle"

    def __init__(self, bundle) -> None:
        super().__init__()
        self.bundle = bundle
        self.parts = self.build()  # read now: a damaged bundle is a message, not a crash

    def build(self) -> list:
        return []

    def compose(self) -> ComposeResult:
        yield Static(f" {self.what} {shown_path(self.bundle.path)}", id="title", markup=False)
        with VerticalScroll(id="result-body"):
            for i, part in enumerate(self.parts):
                yield Static(part, id=f"result-part-{i}", classes="result-part")
        yield Static(id="status", markup=False)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#result-body").focus()

    def set_status(self, text: str) -> None:
        self.query_one("#status", Static).update(text)

    def open_linked(self, key: str, kind: str) -> None:
        found = linked(self.bundle, key, kind)
        if found is None:
            self.notify(f"{ref_text(self.bundle, key)}: the {kind} this {self.what.lower()} "
                        "was made from is not there", severity="warning", timeout=8)
        elif kind == "grid":
            self.app.open_grids([found])
        else:
            self.app.open_run(found)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()

    def action_help(self) -> None:
        from .help import show_help

        show_help(self, self.BINDINGS)


class SelectionScreen(ResultScreen):
    """`probeheat select`: accuracy of greedy, random, majority and the probe's choice."""

    BINDINGS = keys.bindings(keys.SELECTION)
    what = "Selection"

    def build(self) -> list:
        return [selection_overview(self.bundle), selection_table(self.bundle),
                by_type_table(self.bundle), selection_notes(self.bundle)]

    def on_mount(self) -> None:
        super().on_mount()
        table = self.bundle.table
        self.set_status(f"probe {table['probe']['accuracy']:.3f} vs greedy "
                        f"{table['greedy']['accuracy']:.3f} (McNemar p "
                        f"{_p(table['probe'].get('p_vs_greedy'))}) · g: the grid · r: the run")

    def action_open_grid(self) -> None:
        self.open_linked("grid", "grid")

    def action_open_run(self) -> None:
        self.open_linked("run", "run")


class SteerScreen(ResultScreen):
    """`probeheat steer`: the verdict and the alpha x direction table."""

    BINDINGS = keys.bindings(keys.STEER)
    what = "Steer"

    def build(self) -> list:
        return [steer_overview(self.bundle), steer_table(self.bundle)]

    def on_mount(self) -> None:
        super().on_mount()
        self.set_status("bold rows: the probe's direction; the others are random directions "
                        "of the same norm · g: the grid")

    def action_open_grid(self) -> None:
        self.open_linked("grid", "grid")
