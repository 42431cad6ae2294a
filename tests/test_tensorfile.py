"""The standard-library safetensors reader (probeheat/bundle/tensorfile.py) against
safetensors itself, and the numpy-free cells the viewer's grid screen reads: the same
values, the same best cell, the same null percentiles, the same refusals, and a first
frame drawn without numpy."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile import refresh_manifest
from probeheat.tui.model import GridModel, percentile
from safetensors import safe_open
from safetensors.numpy import save_file

from probeheat.bundle import open_grid
from probeheat.bundle.grid import best_index
from probeheat.bundle.tensorfile import Cells, TensorFile
from probeheat.errors import UserError


@pytest.fixture(scope="module")
def evidence(tmp_path_factory) -> Path:
    """A probed grid with every kind of tensor: metrics with intervals and seed spreads,
    baselines, permutations, reliability bins, scores, labels (F64, F32, I64, I8)."""
    from probeheat.probe.grid import make_grid as probe_grid
    from probeheat.synthetic import write_synthetic_run

    root = tmp_path_factory.mktemp("evidence")
    run = write_synthetic_run(root / "run", n=240, n_layers=5, hidden=8, baselines=True)
    return probe_grid(run, root / "grid", seeds=(0, 1), progress=False)


def test_every_tensor_reads_as_safetensors_reads_it(evidence):
    grid = open_grid(evidence)
    path = evidence / "grid.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        assert TensorFile(path).keys() == list(f.keys()) == grid.tensor_names
        for name in f.keys():
            piece, mine = f.get_slice(name), TensorFile(path).get_slice(name)
            assert (mine.get_shape(), mine.get_dtype()) == (piece.get_shape(), piece.get_dtype())
    dtypes = set()
    for name in grid.tensor_names:
        cells, array = grid.cells(name), grid.tensor(name)
        dtypes.add(TensorFile(path).get_slice(name).get_dtype())
        assert cells.shape == array.shape, name
        np.testing.assert_array_equal(np.asarray(cells), array, err_msg=name)  # NaN == NaN
        same = [x if x == x else "NaN" for x in cells.flat]  # Python numbers, exactly
        assert same == [x if x == x else "NaN" for x in array.ravel().tolist()], name
    assert {"F64", "F32", "I64", "I8"} <= dtypes


def test_the_viewer_model_matches_the_numpy_reader(evidence):
    grid = open_grid(evidence)
    model = GridModel(grid)
    model.read_all()
    values = grid.grid_values
    for metric in grid.metrics:
        np.testing.assert_array_equal(np.asarray(model.values(metric)), values.metric(metric))
        best = values.best_cell(metric)
        assert model.best(metric) == (None if best is None else (best.row, best.col))
    lo, hi = values.intervals["auc"]
    assert model.interval("auc", 2, 3) == (lo[2, 3], hi[2, 3])
    assert model.spread("auc", 2, 3) == values.spread["auc"][2, 3]
    assert model.counts["n_test"][1, 1] == grid.counts()["n_test"][1, 1]
    perm = [v[np.isfinite(v)] for v in grid.tensor("perm_auc")]
    median, p95 = model.null
    np.testing.assert_allclose(median, [np.median(v) for v in perm], rtol=1e-15)
    np.testing.assert_allclose(p95, [np.percentile(v, 95) for v in perm], rtol=1e-15)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 20, 101])
def test_percentile_is_numpys(n):
    rng = np.random.default_rng(n)
    values = rng.random(n)
    for q in (0, 5, 50, 95, 97.5, 100):
        assert percentile(sorted(values.tolist()), q) == pytest.approx(
            np.percentile(values, q), rel=1e-15, abs=0)
    assert math.isnan(percentile([], 95))


def test_best_index_is_the_same_over_cells_and_arrays():
    """The two implementations (numpy for arrays, Python for Cells) agree on random grids
    with ties, empty cells and damage, and both follow the definition on small ones."""
    nan, inf = math.nan, math.inf
    cases = {  # (values, lower): the best cell
        ((1.0, 3.0), (3.0, 2.0)): ((0, 1), (0, 0)),  # the first of equal values, row order
        ((nan, 0.5), (inf, 0.7)): ((1, 1), (0, 1)),  # neither an empty cell nor infinity
        ((nan, nan), (-inf, nan)): (None, None),
    }
    for rows, (highest, lowest) in cases.items():
        array = np.array(rows)
        cells = Cells(array.shape, array.ravel().tolist())
        assert best_index(array) == best_index(cells) == highest
        assert best_index(array, lower=True) == best_index(cells, lower=True) == lowest
    rng = np.random.default_rng(0)
    for trial in range(300):
        values = rng.integers(0, 4, size=(rng.integers(1, 6), rng.integers(1, 6))) / 4.0
        mask = rng.random(values.shape)
        values[mask < 0.2] = np.nan
        values[(mask > 0.95)] = np.inf if trial % 2 else -np.inf
        cells = Cells(values.shape, values.ravel().tolist())
        for lower in (False, True):
            assert best_index(values, lower=lower) == best_index(cells, lower=lower)
    assert best_index(np.zeros((0, 0))) is None and best_index(Cells((0, 0), [])) is None


def test_cells_index_like_an_array():
    cells = Cells((2, 3), [0, 1, 2, 3, 4, 5])
    array = np.arange(6).reshape(2, 3)
    for i in range(-2, 2):
        assert cells[i] == array[i].tolist()
        for j in range(-3, 3):
            assert cells[i, j] == array[i, j]
    for bad in [(2, 0), (0, 3), (-3, 0)]:
        with pytest.raises(IndexError):
            cells[bad]
    with pytest.raises(IndexError):
        cells[2]
    assert cells.take_columns([2, 0]).tolist() == array[:, [2, 0]].tolist()
    assert np.asarray(cells).tolist() == array.tolist() and len(cells) == 2
    assert Cells((3,), [1.0, 2.0, 3.0])[-1] == 3.0
    with pytest.raises(ValueError):
        Cells((2, 2), [1, 2, 3])


# -- refusals: what safetensors refuses, this reader refuses too ------------------------------

def tensor_file(path: Path, header: dict, data: bytes, *, length: int | None = None) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def nested(levels: int):
    value = 1
    for _ in range(levels):
        value = [value]
    return value


GOOD = {"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16]},
        "b": {"dtype": "I64", "shape": [1], "data_offsets": [16, 24]}}
HOSTILE = {
    "no header size": (None, b"", 3),
    "header past the end": (GOOD, bytes(24), 10**6),
    "header not JSON": ("not json", bytes(24), None),
    "header a list": ([1, 2], bytes(24), None),
    "unknown dtype": ({"a": {**GOOD["a"], "dtype": "F128"}, "b": GOOD["b"]}, bytes(24), None),
    "negative shape": ({"a": {**GOOD["a"], "shape": [-2]}, "b": GOOD["b"]}, bytes(24), None),
    "size not the shape's": ({"a": {**GOOD["a"], "shape": [3]}, "b": GOOD["b"]}, bytes(24), None),
    "overlapping tensors": ({"a": GOOD["a"], "b": {**GOOD["b"], "data_offsets": [8, 16]}},
                            bytes(16), None),
    "a gap between tensors": ({"a": GOOD["a"], "b": {**GOOD["b"], "data_offsets": [24, 32]}},
                              bytes(32), None),
    "data cut short": (GOOD, bytes(20), None),
    "bytes after the last tensor": (GOOD, bytes(32), None),
    "offsets not numbers": ({"a": {**GOOD["a"], "data_offsets": ["0", 16]}, "b": GOOD["b"]},
                            bytes(24), None),
    # what JSON readers differ on: safetensors' parser refuses each of these
    "nested 128 levels": ({"a": {**GOOD["a"], "x": nested(126)}, "b": GOOD["b"]}, bytes(24),
                          None),
    "nested past Python's recursion limit": (
        '{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16], "x": '
        + "[" * 5000 + "]" * 5000 + "}}", bytes(16), None),
    "metadata not strings": ({**GOOD, "__metadata__": {"k": 1}}, bytes(24), None),
    "metadata a list": ({**GOOD, "__metadata__": ["k"]}, bytes(24), None),
    "NaN in the header": ('{"a": {"dtype": "F64", "shape": [2], "data_offsets": [0, 16], '
                          '"x": NaN}}', bytes(16), None),
    "a lone surrogate in a name": ('{"\\ud800": {"dtype": "F64", "shape": [2], '
                                   '"data_offsets": [0, 16]}}', bytes(16), None),
    "minus zero in a shape": ('{"a": {"dtype": "F64", "shape": [-0, 2], "data_offsets": '
                              '[0, 0]}}', b"", None),
    "a dimension of 2**64": ({"a": {"dtype": "F64", "shape": [2**64, 0],
                                    "data_offsets": [0, 0]}}, b"", None),
    "2**80 values": ({"a": {"dtype": "F64", "shape": [2**40, 2**40, 0],
                            "data_offsets": [0, 0]}}, b"", None),
    "six-bit values not filling a byte": ({"a": {"dtype": "F6_E2M3", "shape": [2],
                                                 "data_offsets": [0, 2]}}, bytes(2), None),
}


def write_hostile(path: Path, header, data: bytes, length) -> Path:
    if header is None:
        path.write_bytes(b"\x01\x02\x03")
        return path
    if isinstance(header, str):
        raw = header.encode()
        path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
        return path
    return tensor_file(path, header, data, length=length)


def test_big_grids_are_read_with_numpy_and_look_the_same(evidence, monkeypatch):
    """Above LIGHT_CELLS the screen's arrays come from numpy (faster for big grids): the
    values and everything the grid screen shows are the same either way."""
    import asyncio

    import probeheat.tui.model as tui_model
    from probeheat.tui.app import ViewerApp

    async def shot():
        app = ViewerApp([evidence])
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause()
            model = app.screen.state.model
            kind = type(model.values("auc")).__name__
            screens = [app.export_screenshot()]
            for key in ("m", "down", "right", "m", "b"):
                await pilot.press(key)
                await pilot.pause()
                screens.append(app.export_screenshot())
            return kind, screens

    light = asyncio.run(shot())
    monkeypatch.setattr(tui_model, "LIGHT_CELLS", 0)
    heavy = asyncio.run(shot())
    assert (light[0], heavy[0]) == ("Cells", "ndarray")
    assert light[1] == heavy[1]


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_headers_are_refused_by_both_readers(case, tmp_path):
    path = write_hostile(tmp_path / "x.safetensors", *HOSTILE[case])
    with pytest.raises(UserError) as refused:
        TensorFile(path)
    assert "not a readable safetensors file" in refused.value.line()
    assert "\n" not in refused.value.line() and len(refused.value.line()) < 400
    with pytest.raises(Exception):  # noqa: B017  (safetensors' own error types)
        with safe_open(str(path), framework="numpy") as f:
            [f.get_tensor(k) for k in f.keys()]


def test_what_safetensors_accepts_is_accepted(tmp_path):
    """At the edges of the rules above: the deepest nesting, odd dtypes, empty files."""
    cases = {
        "nested 127 levels": ({"a": {**GOOD["a"], "x": nested(125)}, "b": GOOD["b"]},
                              bytes(24)),
        "four-bit values": ({"a": {"dtype": "F4", "shape": [4], "data_offsets": [0, 2]}},
                            bytes(2)),
        "six-bit values": ({"a": {"dtype": "F6_E3M2", "shape": [4], "data_offsets": [0, 3]}},
                           bytes(3)),
        "no tensors": ({}, b""),
        "metadata": ({**GOOD, "__metadata__": {"format": "np"}}, bytes(24)),
    }
    for case, (header, data) in cases.items():
        path = tensor_file(tmp_path / "x.safetensors", header, data)
        with safe_open(str(path), framework="numpy") as f:
            want = list(f.keys())
        assert TensorFile(path).keys() == want, case
    for dtype in (np.complex64, np.bool_, np.uint16, np.float16):
        save_file({"t": np.zeros((2, 0, 3), dtype=dtype), "u": np.ones(3, dtype=dtype)},
                  str(tmp_path / "w.safetensors"))
        assert TensorFile(tmp_path / "w.safetensors").keys() == ["t", "u"], dtype


def test_unreadable_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match="cannot be read"):
        TensorFile(tmp_path)  # a folder
    with pytest.raises(UserError, match="missing"):
        TensorFile(tmp_path / "gone.safetensors")
    long = tensor_file(tmp_path / "x.safetensors",
                       {"a": {"dtype": "F64", "shape": [1] * 100_000, "data_offsets": [0, 9]}},
                       bytes(9))
    with pytest.raises(UserError) as refused:
        TensorFile(long)
    assert len(refused.value.line()) < 400  # the shape is shortened, not printed whole


def test_a_good_file_is_read_by_both(tmp_path):
    path = tensor_file(tmp_path / "x.safetensors", GOOD, struct.pack("<ddq", 1.5, -2.0, 7))
    mine = TensorFile(path)
    assert mine.values("a").tolist() == [1.5, -2.0] and mine.values("b").tolist() == [7]
    with safe_open(str(path), framework="numpy") as f:
        assert f.get_tensor("a").tolist() == [1.5, -2.0]
    save_file({"h": np.ones(3, dtype=np.float16)}, str(tmp_path / "h.safetensors"))
    half = TensorFile(tmp_path / "h.safetensors")
    assert half.get_slice("h").get_dtype() == "F16"  # headers of any dtype
    with pytest.raises(UserError, match="only the numpy reader"):
        half.values("h")


def test_a_damaged_tensor_the_screen_reads_later_is_a_message_at_open(evidence, tmp_path):
    """The grid screen reads every tensor it shows when the grid opens: damage in an
    interval (read only when the cursor reaches a cell) is the open's message."""
    import shutil

    from probeheat.tui.app import ViewerApp
    from probeheat.tui.screens import MessageScreen

    grid = shutil.copytree(evidence, tmp_path / "grid")
    path = grid / "grid.safetensors"
    with safe_open(str(path), framework="numpy") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["ece_hi"][0, 0] = 2.0  # an ECE bound outside [0, 1]
    save_file(tensors, str(path))
    refresh_manifest(grid)
    screens = ViewerApp([grid]).first_screens()
    assert isinstance(screens[0], MessageScreen)
    assert "'ece_hi' holds values outside [0, 1]" in "\n".join(screens[0].lines)


FIRST_FRAME = """
import asyncio, sys
from pathlib import Path
from probeheat.tui.app import ViewerApp

async def main():
    app = ViewerApp([Path(sys.argv[1])])
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        text = app.export_screenshot().replace("&#160;", " ")
        print("numpy at first frame:", "numpy" in sys.modules)
        print("strip:", "Baselines (AUC)" in text and "null p95" in text)
        await pilot.press("enter")
        await pilot.pause()
        print("numpy after the detail:", "numpy" in sys.modules, type(app.screen).__name__)

asyncio.run(main())
"""


def test_the_first_frame_is_drawn_without_numpy(evidence, tmp_path):
    """A grid with baselines, a permutation null and seeds: the screen, its baseline strip
    and status line come from the standard-library reader; numpy loads for the detail."""
    script = tmp_path / "first_frame.py"
    script.write_text(FIRST_FRAME)
    out = subprocess.run([sys.executable, str(script), str(evidence)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "numpy at first frame: False" in out.stdout
    assert "strip: True" in out.stdout
    assert "numpy after the detail: True DetailScreen" in out.stdout
