"""The house's shape: stage packages import only what their layer may, and code stays small.

The rules (README, Layout):
- the core (probeheat/) never imports textual;
- probeheat.bundle imports no producer module (probeheat.run, probeheat.probe, figures);
- probeheat.probe never imports probeheat.run (a grid needs only the run *bundle*);
- the viewer (tui/) does not import torch, transformers or matplotlib at start-up;
- no function longer than 60 lines, none with more than 8 parameters (keyword catch-alls
  such as **options count once; dataclasses are exempt by construction).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CODE = [REPO / "probeheat", REPO / "tui"]


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Absolute names of every module a file imports (relative imports resolved)."""
    parts = path.relative_to(root).with_suffix("").parts[:-1]
    package = "probeheat.tui" if parts[:1] == ("tui",) else ".".join(parts)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.add(name)
            out.update(f"{name}.{alias.name}" for alias in node.names)
    return out


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in files_under(folder):
        for name in imported_modules(path):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    return bad


def test_core_never_imports_textual():
    assert offenders(REPO / "probeheat", ("textual",)) == []


def test_bundle_imports_no_producer():
    producers = ("probeheat.run", "probeheat.probe", "probeheat.figures", "probeheat.synthetic",
                 "probeheat.models", "probeheat.data", "probeheat.tui")
    assert offenders(REPO / "probeheat" / "bundle", producers) == []


def test_probe_stage_never_imports_the_run_stage():
    assert offenders(REPO / "probeheat" / "probe", ("probeheat.run",)) == []


def test_viewer_starts_without_torch_transformers_or_matplotlib():
    code = ("import sys; import probeheat.tui.app, probeheat.tui.browser, probeheat.tui.screens; "
            "print(sorted(m for m in ('torch', 'transformers', 'matplotlib', 'ml_dtypes') "
            "if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=REPO)
    assert result.stdout.strip() == "[]"


def functions(folder: Path):
    for path in files_under(folder):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield path, node


def parameter_count(node) -> int:
    args = node.args
    names = [a.arg for a in args.posonlyargs + args.args]
    count = len(names) + len(args.kwonlyargs) + bool(args.vararg) + bool(args.kwarg)
    return count - (names[:1] in (["self"], ["cls"]))


@pytest.mark.parametrize("folder", CODE, ids=lambda p: p.name)
def test_functions_fit_on_a_screen(folder):
    long = [f"{p.relative_to(REPO)}:{n.lineno} {n.name} ({n.end_lineno - n.lineno + 1} lines)"
            for p, n in functions(folder) if n.end_lineno - n.lineno + 1 > 60]
    assert long == []


@pytest.mark.parametrize("folder", CODE, ids=lambda p: p.name)
def test_functions_take_few_parameters(folder):
    wide = [f"{p.relative_to(REPO)}:{n.lineno} {n.name} ({parameter_count(n)} parameters)"
            for p, n in functions(folder) if parameter_count(n) > 8]
    assert wide == []


def test_the_checks_see_what_they_check(tmp_path):
    """A test that cannot fail is a defect: the helpers above do find violations."""
    sample = tmp_path / "probeheat" / "bundle" / "x.py"
    sample.parent.mkdir(parents=True)
    sample.write_text("from ..run import capture\nimport textual.app\n"
                      "def f(a, b, c, d, e, f, g, h, i):\n" + "    x = 1\n" * 61)
    fn = next(n for n in ast.walk(ast.parse(sample.read_text()))
              if isinstance(n, ast.FunctionDef))
    assert parameter_count(fn) == 9 and fn.end_lineno - fn.lineno + 1 == 62
    names = imported_modules(sample, root=tmp_path)
    assert "probeheat.run.capture" in names and "textual.app" in names
