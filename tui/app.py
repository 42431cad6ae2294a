"""The viewer application: decides the first screen from the paths it was given.

Imports textual and the standard library to draw a grid's first frame (the grid screen
reads its cells with probeheat/bundle/tensorfile.py); numpy loads with the first feature
that needs it (a diff, a cell's detail, the browser). Never torch, transformers or
matplotlib (matplotlib is imported by the export action, on first use).
"""

from __future__ import annotations

from pathlib import Path

from textual.app import App

from probeheat.bundle import open_bundle, open_grid
from probeheat.errors import UserError

from . import keys
from .heatmap_screen import HeatmapScreen
from .model import GridModel, type_grid_folder
from .screens import MIN_HEIGHT, MIN_WIDTH, MessageScreen, TooSmallScreen

DEFAULT_ROOT = Path("artifacts")


class ViewerApp(App):
    """`probeheat view`: browse bundles, look at grids, export figures."""

    TITLE = "probeheat view"
    CSS_PATH = Path(__file__).with_name("viewer.tcss")  # absolute: subclasses live elsewhere
    ENABLE_COMMAND_PALETTE = True
    BINDINGS = keys.bindings(keys.APP)

    def __init__(self, paths: list[Path] | None = None, *, root: Path = DEFAULT_ROOT,
                 metric: str | None = None, vmin: float = 0.5, vmax: float = 1.0,
                 opened=()) -> None:
        """opened: bundles of these paths already opened (by `probeheat view`'s checks),
        so that their manifests are not read and checked a second time."""
        super().__init__()
        self.paths = [Path(p) for p in paths or []]
        self._opened = {Path(b.path): b for b in opened}
        self.root = root
        self.options = dict(metric=metric, vmin=vmin, vmax=vmax)
        self.started = False

    def get_default_screen(self):
        """The first screen is the bottom of the stack (one screen composed, not a blank
        default under it); any screens over it are pushed once the app is mounted."""
        self._first_screens = self.first_screens()
        return self._first_screens[0]

    def on_mount(self) -> None:
        for screen in self._first_screens[1:]:
            self.push_screen(screen)
        self.started = True
        self.check_size(self.size)

    def first_screens(self) -> list:
        """Screens to open with, bottom first; bad input becomes a message screen."""
        if not self.paths:
            return [self.browser(self.root)]
        if len(self.paths) == 1 and self.paths[0].name.endswith(".partial") \
                and self.paths[0].is_dir():
            return [self.partial_page(self.paths[0])]
        if len(self.paths) == 1 and self.paths[0].is_dir() \
                and not (self.paths[0] / "manifest.json").exists():
            types = type_grid_folder(self.paths[0])  # probe --target error-type: OUT/<type>/
            if types:
                return [self.type_grids(types)]
            return [self.browser(self.paths[0])]
        bundles, problems = [], []
        for path in self.paths:
            try:
                bundle = self._opened.get(path) or open_bundle(path)
                if bundle.kind == "run":  # read now: a damaged run is a message, not a crash
                    bundle.records()
                bundles.append(bundle)
            except UserError as exc:
                problems.append(exc.line())
        grids = [b for b in bundles if b.kind == "grid"]
        pages = [b for b in bundles if b.kind in ("run", "selection", "steer")]
        screens: list = []
        if problems:
            screens.append(MessageScreen("Cannot open", problems))
        if pages and not grids:
            screens.append(self.page_or_message(pages[0]))
        elif grids:
            try:
                screens.append(self.heatmap(grids))
            except UserError as exc:
                screens.append(MessageScreen("Cannot open", [exc.line()]))
        elif not problems:
            kinds = ", ".join(sorted({b.kind for b in bundles}))
            screens.append(MessageScreen("Nothing to view", [f"{kinds} bundles have no heatmap"]))
        return screens

    def browser(self, root: Path):
        if not root.exists():
            return MessageScreen("Cannot open", [UserError(str(root), "no such folder",
                                 "pass a folder of bundles, e.g. probeheat view artifacts/")
                                 .line()])
        from .browser import BrowserScreen  # DataTable costs start-up time a grid never needs

        return BrowserScreen(root)

    def type_grids(self, paths: list[Path]):
        """The grids of an error-type folder as tabs, or why they cannot be shown."""
        try:
            return self.heatmap([open_grid(p) for p in paths])
        except UserError as exc:
            return MessageScreen("Cannot open", [exc.line()])

    def heatmap(self, grids, candidates=None) -> HeatmapScreen:
        names = _short_names([g.path for g in grids])
        models = [GridModel(g, name) for g, name in zip(grids, names, strict=True)]
        for model in models:  # read now, so a damaged grid is a message, not a crash later
            model.read_all()
        return HeatmapScreen(models, candidates=candidates, **self.options)

    def open_grids(self, grids, candidates=None) -> None:
        try:
            screen = self.heatmap(grids, candidates)
        except UserError as exc:
            self.notify(exc.line(), severity="error", timeout=8)
            return
        self.push_screen(screen)

    def run_page(self, run):
        """The run page of a run bundle (its records are read now: damage is a message)."""
        from .run_screen import RunScreen  # DataTable and Input: only when a run is shown
        from .runinfo import RunInfo

        return RunScreen(RunInfo.from_bundle(run), root=self.root)

    def page(self, bundle):
        """The page of a run, selection or steer bundle (read now: damage is a UserError)."""
        if bundle.kind == "run":
            return self.run_page(bundle)
        from .results import SelectionScreen, SteerScreen

        return (SelectionScreen if bundle.kind == "selection" else SteerScreen)(bundle)

    def page_or_message(self, bundle):
        try:
            return self.page(bundle)
        except UserError as exc:
            return MessageScreen("Cannot open", [exc.line()])

    def open_page(self, bundle) -> None:
        try:
            screen = self.page(bundle)
        except UserError as exc:
            self.notify(exc.line(), severity="error", timeout=8)
            return
        self.push_screen(screen)

    def open_steer_path(self, path: Path) -> None:
        try:
            self.open_page(open_bundle(path))
        except UserError as exc:
            self.notify(exc.line(), severity="error", timeout=8)

    def partial_page(self, path: Path):
        """The run page of a run still being written, or why nothing can be shown yet."""
        from .run_screen import RunScreen
        from .runinfo import read_partial

        try:
            return RunScreen(read_partial(path), root=self.root)
        except UserError as exc:
            return MessageScreen("Nothing to show yet", [exc.line()])

    def open_run(self, run) -> None:
        self.open_page(run)

    def open_partial(self, path: Path) -> None:
        from .runinfo import read_partial

        try:
            info = read_partial(path)
        except UserError as exc:
            self.notify(exc.line(), severity="warning", timeout=8)
            return
        from .run_screen import RunScreen

        self.push_screen(RunScreen(info, root=self.root))

    # -- terminal size --------------------------------------------------------------------

    def on_resize(self, event) -> None:
        # runs before App._on_resize records the new size, so take it from the event
        if self.started:
            self.check_size(event.size)

    def check_size(self, size) -> None:
        width, height = size
        small = width < MIN_WIDTH or height < MIN_HEIGHT
        top = self.screen_stack[-1] if self.screen_stack else None
        if small and not isinstance(top, TooSmallScreen):
            self.push_screen(TooSmallScreen())
        elif small:
            top.show_size(size)
        elif isinstance(top, TooSmallScreen):
            self.pop_screen()


def _short_names(paths: list[Path]) -> list[str]:
    """Folder names, with the parent added where two grids share a name."""
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def run_viewer(paths: list[Path], opened=(), **options) -> int:
    ViewerApp(paths, opened=opened, **options).run()
    return 0
