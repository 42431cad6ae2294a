"""Mutated sample bundles: every reader refuses in one line, or gives the unmutated answer.

Hypothesis draws a mutation of the committed sample run or grid and runs inspect, verify,
probe (runs) or export (grids), and the viewer's loading on the result. For each, exactly
one of two outcomes is allowed: a non-zero exit with one line and no traceback, or exit 0
with output identical to the unmutated bundle's. There is no third outcome.

Mutations come in two families:
- damage, with the manifest left alone: flipped, dropped or added bytes in any file
  (manifest included), truncation, a deleted file, a planted unlisted file;
- a deliberate edit with the checksums made to match again, which breaks the format: a
  JSON value of another type or nested too deeply, a record or shard duplicated, a
  tensor header with another dtype or shape, values a grid tensor may not hold.
An edit that keeps the format (different but well-formed numbers, with new checksums) is a
different bundle, not damage, and is not drawn.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
from hostile import SAMPLES, cli, refresh_manifest, set_header
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

RUN, GRID = "run-synthetic", "grid-synthetic"
EXAMPLES = 1000 if os.environ.get("PROBEHEAT_FUZZ") else 200
# null is left out: where FORMAT.md allows null, null is no damage (and a null is never
# replaced: any value may be right there)
OTHER_TYPES = [True, 7, -3, 1.5, "x", [], {}, [1, "a"], {"k": 1}]


def listed(root: Path) -> list[str]:
    return sorted(json.loads((root / "manifest.json").read_text())["files"])


# --- mutations -----------------------------------------------------------------------------

def damage_bytes(root: Path, data) -> None:
    name = data.draw(st.sampled_from(["manifest.json", *listed(root)]), label="file")
    path = root / name
    blob = bytearray(path.read_bytes())
    how = data.draw(st.sampled_from(["flip", "truncate", "append", "delete", "insert"]))
    at = data.draw(st.integers(0, max(len(blob) - 1, 0)), label="offset")
    if how == "flip":
        blob[at] ^= 1 << data.draw(st.integers(0, 7))
    elif how == "truncate":
        del blob[at:]
    elif how == "append":
        blob += data.draw(st.binary(min_size=1, max_size=16))
    elif how == "insert":
        blob[at:at] = data.draw(st.binary(min_size=1, max_size=4))
    if how == "delete":
        path.unlink()
    else:
        path.write_bytes(bytes(blob))


def plant_file(root: Path, data) -> None:
    name = data.draw(st.sampled_from(["notes.txt", "extra.json", "shards/evil.pkl",
                                      ".hidden.json", "shards/x.safetensors"]))
    (root / name).parent.mkdir(exist_ok=True)
    (root / name).write_bytes(b"not part of the bundle")


def json_paths(value, prefix=()):
    """Every path to a value inside a JSON document (capped, to keep drawing cheap)."""
    out = [prefix]
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))[:6]
    else:
        items = []
    for key, child in items:
        out += json_paths(child, (*prefix, key))
    return out


def retype_json(root: Path, data) -> None:
    names = [n for n in listed(root) if n.endswith(".json")]
    path = root / data.draw(st.sampled_from(names), label="file")
    doc = json.loads(path.read_text())
    paths = [p for p in json_paths(doc)[1:] if _get(doc, p) is not None]
    where = data.draw(st.sampled_from(paths), label="path")
    old = _get(doc, where)
    choices = [v for v in OTHER_TYPES if _kind(v) != _kind(old)]
    if data.draw(st.booleans(), label="nest"):
        choices = [json.loads("[" * 70 + "]" * 70)]  # deeper than a bundle may nest
    _set(doc, where, data.draw(st.sampled_from(choices), label="new value"))
    path.write_text(json.dumps(doc))
    refresh_manifest(root)


def _kind(v) -> str:
    return "bool" if isinstance(v, bool) else "number" if isinstance(v, int | float) \
        else type(v).__name__


def _get(doc, path):
    for key in path:
        doc = doc[key]
    return doc


def _set(doc, path, value) -> None:
    _get(doc, path[:-1])[path[-1]] = value


def duplicate(root: Path, data) -> None:
    files = listed(root)
    if "shards/shard-r000-00000.json" in files and data.draw(st.booleans()):
        for suffix in (".json", ".safetensors"):
            shutil.copy(root / f"shards/shard-r000-00000{suffix}",
                        root / f"shards/shard-r000-00007{suffix}")
        refresh_manifest(root)
        return
    manifest = json.loads((root / "manifest.json").read_text())
    name = data.draw(st.sampled_from(files))
    manifest["files"][data.draw(st.sampled_from([f"./{name}", name.replace("/", "//")
                                                 if "/" in name else f".//{name}"]))] = \
        manifest["files"][name]
    from probeheat.bundle.manifest import seal

    (root / "manifest.json").write_text(json.dumps(seal(manifest)))


SAME_SIZE = {"F16": ["BF16", "I16"], "BF16": ["F16"], "F32": ["I32"], "F64": ["I64"],
             "I64": ["F64"], "U8": ["I8"], "I8": ["U8"], "I32": ["F32"]}


def retype_header(root: Path, data) -> None:
    names = [n for n in listed(root) if n.endswith(".safetensors")]
    path = root / data.draw(st.sampled_from(names), label="file")
    tensors = load_file(str(path))
    name = data.draw(st.sampled_from(sorted(tensors)), label="tensor")

    def change(header):
        entry = header[name]
        if data.draw(st.booleans(), label="dtype"):
            entry["dtype"] = data.draw(st.sampled_from(SAME_SIZE.get(entry["dtype"], ["F32"])))
        else:
            shape = entry["shape"]
            size = int(np.prod(shape)) if shape else 1
            entry["shape"] = data.draw(st.sampled_from([[size], [1, size], shape[::-1]
                                                        if len(shape) > 1 else [size, 1]]))
    set_header(path, change)
    refresh_manifest(root)


def forbidden_values(root: Path, data) -> None:
    path = root / "grid.safetensors"
    tensors = load_file(str(path))
    name = data.draw(st.sampled_from(["auc", "auc_lo", "accuracy", "labels", "test_rows",
                                      "n_test", "auc_by_seed"]), label="tensor")
    flat = tensors[name].reshape(-1)
    at = data.draw(st.integers(0, flat.size - 1), label="at")
    flat[at] = data.draw(st.sampled_from(
        [np.inf, -np.inf, 2.0, -0.5, np.nan] if flat.dtype.kind == "f" else [-7, 9, 2]))
    save_file(tensors, str(path))
    refresh_manifest(root)


DAMAGE = {"bytes": damage_bytes, "plant": plant_file}
EDITS = {"json": retype_json, "duplicate": duplicate, "header": retype_header}


# --- what each reader says -----------------------------------------------------------------

def view_load(path: Path) -> tuple[int, str]:
    """What `probeheat view PATH` shows first: one line and exit 2, or the screen's content."""
    from probeheat.tui.app import ViewerApp

    from probeheat.commands.view import check_paths
    from probeheat.errors import UserError

    try:
        check_paths([path])
    except UserError as exc:
        return 2, exc.line()
    screens = ViewerApp([path]).first_screens()
    first = screens[0]
    if type(first).__name__ == "BrowserScreen":
        from probeheat.tui.model import find_bundles

        return 0, "browse " + repr([(e.kind, e.error) for e in find_bundles(path)])
    if type(first).__name__ == "MessageScreen":
        return 2, "\n".join(first.lines)
    if type(first).__name__ == "RunScreen":
        return 0, f"run {first.run.n_examples}"
    model = first.states[0].model
    return 0, repr((model.title, np.asarray(model.values(first.states[0].metric)).tobytes()))


def outcomes(kind: str, root: Path, work: Path) -> dict[str, tuple[int, str]]:
    """{command: (exit code, output)}; paths replaced by ROOT / WORK so runs compare."""
    results = {"inspect": cli("inspect", "--json", root), "verify": cli("verify", root)}
    if kind == "run":
        out = work / "grid"
        results["probe"] = cli("probe", root, "--out", out, "--layers", "0:4", "--quiet")
        if results["probe"].code == 0:
            results["probe"].out = (out / "grid.safetensors").read_bytes().hex()
        shutil.rmtree(out, ignore_errors=True)
    else:
        figure = work / "f.png"
        results["export"] = cli("export", root, "-o", figure, "--dpi", "40")
        if results["export"].code == 0:
            results["export"].out = figure.read_bytes().hex()
        figure.unlink(missing_ok=True)
    said = {name: (r.code, r.out + r.err) for name, r in results.items()}
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        said["view"] = view_load(root)
    return {k: (code, text.replace(str(root), "ROOT").replace(str(work), "WORK"))
            for k, (code, text) in said.items()}


def fresh(kind: str, tmp: Path) -> tuple[Path, Path]:
    shutil.copytree(SAMPLES / RUN, tmp / RUN)
    shutil.copytree(SAMPLES / GRID, tmp / GRID)
    (tmp / "work").mkdir()
    return tmp / (RUN if kind == "run" else GRID), tmp / "work"


BASELINE: dict[str, dict] = {}


def baseline(kind: str) -> dict:
    if kind not in BASELINE:
        with tempfile.TemporaryDirectory() as tmp:
            root, work = fresh(kind, Path(tmp))
            BASELINE[kind] = outcomes(kind, root, work)
            assert all(code == 0 for code, _ in BASELINE[kind].values()), BASELINE[kind]
    return BASELINE[kind]


def one_line(code: int, text: str) -> bool:
    lines = text.strip().splitlines()
    return code != 0 and len(lines) == 1 and "Traceback" not in text


@settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck))
@given(kind=st.sampled_from(["run", "grid"]),
       family=st.sampled_from(sorted({**DAMAGE, **EDITS, "values": None})), data=st.data())
def test_a_mutated_bundle_is_refused_in_one_line_or_read_as_before(kind, family, data):
    with tempfile.TemporaryDirectory() as tmp:
        root, work = fresh(kind, Path(tmp))
        if family == "values":
            if kind == "run":
                family = "header"
            else:
                forbidden_values(root, data)
        if family != "values":
            {**DAMAGE, **EDITS}[family](root, data)
        got = outcomes(kind, root, work)
    expected = baseline(kind)
    for command, (code, text) in got.items():
        assert one_line(code, text) or (code, text) == expected[command], \
            (command, code, text[:400])
