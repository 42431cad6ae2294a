"""`probeheat export`: the study's look, byte-identical vector output, and one-line refusals."""

from __future__ import annotations

import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import numpy as np
import pytest

from probeheat.bundle import open_bundle, open_grid, write_generalization, write_grid
from probeheat.cli import main
from probeheat.errors import UserError
from probeheat.figures import (
    Highlight,
    export_grid,
    grid_view,
    parse_highlight,
)
from probeheat.selection import select_layers, select_positions

NAMED = ["last_q", "first_answer", "second_answer", "exact_answer_before_first",
         "exact_answer_first", "exact_answer_last", "exact_answer_after_last"]
STUDY = NAMED + [str(-k) for k in range(8, 0, -1)]
WIDE = NAMED + [str(-k) for k in range(30, 0, -1)]
LAYERS = list(range(32))
SVG = "{http://www.w3.org/2000/svg}"
EVEN_LAYERS = [str(x) for x in range(0, 32, 2)]


def make_grid(path: Path, positions=STUDY, values=None, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    if values is None:
        values = 0.5 + 0.4 * rng.random((len(LAYERS), len(positions)))
        values[rng.random(values.shape) < 0.03] = np.nan  # cells without a probe
    meta = {"layers": LAYERS, "positions": list(positions), "metrics": ["auc", "accuracy"]}
    return write_grid(path, meta, {"auc": values, "accuracy": values - 0.1})


@pytest.fixture
def grid(tmp_path):
    return open_grid(make_grid(tmp_path / "grid"))


@pytest.fixture
def out_dir(tmp_path):
    folder = tmp_path / "figs"
    folder.mkdir()
    return folder


# ---------------------------------------------------------------- reading figures back


def svg_groups(path: Path) -> dict:
    root = ET.parse(path).getroot()
    return {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("id")}


def _texts(el) -> list[str]:
    return ["".join(t.itertext()) for t in el.iter(f"{SVG}text")]


def axis_texts(axes_group) -> dict:
    """Tick texts and axis titles of one axes group (x axis first, as matplotlib writes it)."""
    axes = [g for g in axes_group if (g.get("id") or "").startswith("matplotlib.axis_")]
    out = {}
    for name, axis in zip("xy", axes, strict=True):
        ticks = [g for g in axis if re.match(r"[xy]tick_", g.get("id") or "")]
        out[f"{name}ticks"] = [t for g in ticks for t in _texts(g)]
        out[f"{name}label"] = [t for g in axis if (g.get("id") or "").startswith("text_")
                               for t in _texts(g)]
    return out


def path_box(group) -> tuple[float, float, float, float]:
    nums = [float(v) for v in re.findall(r"-?\d+\.?\d*", group.find(f"{SVG}path").get("d"))]
    xs, ys = nums[0::2], nums[1::2]
    return min(xs), min(ys), max(xs), max(ys)


def cell_edges(groups) -> tuple[list[float], list[float]]:
    boxes = [path_box_of(p) for p in groups["cells"].iter(f"{SVG}path")]
    xs = sorted({round(v, 2) for b in boxes for v in (b[0], b[2])})
    ys = sorted({round(v, 2) for b in boxes for v in (b[1], b[3])})
    return xs, ys


def path_box_of(path_el) -> tuple[float, float, float, float]:
    nums = [float(v) for v in re.findall(r"-?\d+\.?\d*", path_el.get("d"))]
    return min(nums[0::2]), min(nums[1::2]), max(nums[0::2]), max(nums[1::2])


def pdf_bytes_all(data: bytes) -> bytes:
    """The PDF with every Flate stream decompressed appended, so dictionaries inside
    compressed streams are searched too."""
    parts = [data]
    for match in re.finditer(rb"stream\r?\n(.*?)endstream", data, re.S):
        try:
            parts.append(zlib.decompress(match.group(1)))
        except zlib.error:
            pass
    return b"\n".join(parts)


def export(argv: list[str], capsys=None) -> tuple[int, str]:
    code = main(["export", *map(str, argv)])
    err = capsys.readouterr().err if capsys else ""
    return code, err


# ---------------------------------------------------------------- determinism and format


@pytest.mark.parametrize("ext", ["png", "pdf", "svg"])
def test_identical_inputs_give_identical_bytes(grid, out_dir, ext, monkeypatch):
    # Annotations make 480 text objects; 12 layers keep the test quick and cover the same paths.
    opts = dict(annotate=True, mark_best=True, highlights=["4:8,first_answer:-1"], title="T",
                layers="0:11", width="double")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000000000")  # a different clock for each export
    a = export_grid(grid, out_dir / f"a.{ext}", **opts)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    b = export_grid(grid, out_dir / f"b.{ext}", **opts)
    assert a.read_bytes() == b.read_bytes()
    assert len(a.read_bytes()) > 1000


def test_pdf_embeds_truetype_and_draws_cells_as_vectors(grid, out_dir):
    data = pdf_bytes_all(export_grid(grid, out_dir / "f.pdf").read_bytes())
    assert b"/FontFile2" in data  # TrueType font program embedded
    assert b"/Subtype /Type3" not in data and b"/FontFile3" not in data
    assert b"/Subtype /Image" not in data  # no raster XObject, cells and colour bar included
    assert re.search(rb"/Subtype /(TrueType|CIDFontType2)", data)


def test_export_leaves_global_rcparams_alone(grid, out_dir):
    import matplotlib

    before = {k: matplotlib.rcParams[k] for k in ("pdf.fonttype", "svg.fonttype", "font.size")}
    export_grid(grid, out_dir / "f.svg")
    after = {k: matplotlib.rcParams[k] for k in before}
    assert before == after


@pytest.mark.parametrize("width,dpi,height,expected", [
    ("single", 200, None, 650), ("double", 100, None, 675), ("4", 100, 3.0, 400)])
def test_png_size_follows_width_and_dpi(grid, out_dir, width, dpi, height, expected):
    from matplotlib.image import imread

    png = export_grid(grid, out_dir / "f.png", width=width, dpi=dpi, height=height)
    h, w = imread(png).shape[:2]
    assert w == expected
    if height is not None:
        assert h == round(height * dpi)
    else:
        assert 0.5 * w <= h <= 1.35 * w + 1


def test_png_cell_colours_follow_the_blues_ramp(tmp_path, out_dir):
    import matplotlib
    from matplotlib.image import imread

    values = np.full((32, 15), 0.6)
    values[16:] = 0.9
    values[:, 14] = np.nan
    grid = open_grid(make_grid(tmp_path / "known", values=values))
    rgb = imread(export_grid(grid, out_dir / "f.png"))[..., :3]
    blues = matplotlib.colormaps["Blues"]

    def pixels_near(colour) -> int:
        return int((np.abs(rgb - np.asarray(colour)[:3]).max(axis=-1) < 1.5 / 255).sum())

    # 0.6 and 0.9 sit at 20% and 80% of the 0.5..1.0 scale; each fills half of the cells.
    assert pixels_near(blues(0.2)) > 20_000
    assert pixels_near(blues(0.8)) > 20_000
    assert pixels_near(blues(0.5)) < 2_000  # only the colour bar holds the middle of the ramp
    assert pixels_near(matplotlib.colors.to_rgb("#d9d9d9")) > 5_000  # the NaN column


# ---------------------------------------------------------------- the study's layouts


SEED_LAYOUTS = {
    # 000: named positions, then user positions from the end of the sequence (-30..-1 held)
    "000": (WIDE, ["--positions", ",".join(NAMED + [str(-k) for k in range(30, 9, -2)])
                   + ",-8:-1", "--width", "double"],
            NAMED + [str(-k) for k in range(30, 9, -2)] + [str(-k) for k in range(8, 0, -1)]),
    "001": (STUDY, ["--positions", ",".join(NAMED[:6]) + ",-8:-1",
                    "--highlight", "4:28,first_answer:-1"], NAMED[:6] + STUDY[7:]),
    "002": (STUDY, [], STUDY),
    "003": (STUDY, ["--positions", "last_q:exact_answer_after_last"], NAMED),
    "004": (STUDY, ["--positions", "last_q,exact_answer_first,exact_answer_last,"
                    "exact_answer_after_last,-8:-1"],
            ["last_q", "exact_answer_first", "exact_answer_last", "exact_answer_after_last"]
            + STUDY[7:]),
}


@pytest.mark.parametrize("seed", sorted(SEED_LAYOUTS))
def test_seed_layouts_reproduce_from_options(tmp_path, out_dir, seed):
    positions, options, expected_ticks = SEED_LAYOUTS[seed]
    bundle = make_grid(tmp_path / "grid", positions=positions)
    out = out_dir / f"seed{seed}.svg"
    assert export([bundle, "-o", out, *options]) == (0, "")
    groups = svg_groups(out)
    heat, bar = axis_texts(groups["heatmap"]), axis_texts(groups["colorbar"])
    assert heat["xticks"] == expected_ticks
    assert heat["yticks"] == EVEN_LAYERS  # layer 0 at the top, a tick every 2 layers
    assert heat["xlabel"] == ["Token"] and heat["ylabel"] == ["Layer"]
    assert bar["ylabel"] == ["AUC"]
    assert bar["yticks"][0] == "0.5" and bar["yticks"][-1] == "1.0"
    assert ("highlight-1" in groups) == (seed == "001")


def test_layer_zero_is_drawn_at_the_top(grid, out_dir):
    groups = svg_groups(export_grid(grid, out_dir / "f.svg"))
    ticks = [g for g in groups["heatmap"].iter(f"{SVG}g")
             if (g.get("id") or "").startswith("ytick_")]
    ys = {"".join(t.itertext()): float(t.get("y")) for g in ticks for t in g.iter(f"{SVG}text")}
    assert ys["0"] < ys["2"] < ys["30"]  # SVG y grows downwards


def test_highlight_box_covers_exactly_its_cells(grid, out_dir):
    out = export_grid(grid, out_dir / "f.svg", highlights=[Highlight(4, 28, "first_answer", "-1")])
    groups = svg_groups(out)
    xs, ys = cell_edges(groups)
    x0, y0, x1, y1 = path_box(groups["highlight-1"])
    assert (round(x0, 2), round(x1, 2)) == (xs[1], xs[15])  # columns first_answer .. -1
    assert (round(y0, 2), round(y1, 2)) == (ys[4], ys[29])  # rows of layers 4 .. 28


def test_annotations_flip_to_white_on_dark_cells(tmp_path, out_dir):
    values = np.full((32, 15), 0.55)
    values[0, 0] = 0.97
    grid = open_grid(make_grid(tmp_path / "g", values=values))
    root = ET.parse(export_grid(grid, out_dir / "f.svg", annotate=True,
                                width="double")).getroot()
    styles = {"".join(t.itertext()): t.get("style") for t in root.iter(f"{SVG}text")}
    assert "fill: #ffffff" in styles["0.97"]
    assert "fill" not in styles["0.55"]  # default black


def test_mark_best_outlines_the_highest_shown_cell(grid, out_dir):
    view = grid_view(grid, mark_best=True, layers="10:20")
    values = grid.metric("auc")[10:21]
    assert values[view.best] == np.nanmax(values)
    assert "best-cell" in svg_groups(export_grid(grid, out_dir / "f.svg", mark_best=True))


# ---------------------------------------------------------------- diff, panels, generalization


def test_diff_subtracts_on_shared_cells_with_a_symmetric_scale(tmp_path, out_dir):
    a = open_grid(make_grid(tmp_path / "a", seed=1))
    b = open_grid(make_grid(tmp_path / "b", positions=STUDY[4:], seed=2))
    view = grid_view(a, diff=b)
    assert view.positions == STUDY[4:]
    expected = a.metric("auc")[:, 4:] - b.metric("auc")
    np.testing.assert_array_equal(view.values, expected)
    assert view.vmin == -view.vmax == -np.nanmax(np.abs(expected))
    code, _ = export([a.path, "--diff", b.path, "-o", out_dir / "d.svg"])
    bar = axis_texts(svg_groups(out_dir / "d.svg")["colorbar"])
    assert code == 0 and bar["ylabel"] == ["Δ AUC"]


def test_a_diff_of_two_models_says_so(tmp_path, out_dir, capsys):
    def grid(name, model):
        meta = {"layers": LAYERS, "positions": list(STUDY), "metrics": ["auc"],
                "model": {"model_id": model, "revision": "r1"}}
        return write_grid(tmp_path / name, meta, {"auc": np.full((len(LAYERS), len(STUDY)),
                                                                 0.7)})

    a, b, c = grid("a", "smollm2"), grid("b", "gemma3"), grid("c", "smollm2")
    code, err = export([a, "--diff", b, "-o", out_dir / "d.svg"], capsys)
    assert code == 0 and "note: A probes smollm2, B probes gemma3" in err
    code, err = export([a, "--diff", c, "-o", out_dir / "e.svg"], capsys)
    assert code == 0 and "note:" not in err  # one model: nothing to say


def test_diff_refuses_grids_without_shared_positions(tmp_path, out_dir, capsys):
    a = make_grid(tmp_path / "a", positions=STUDY[:5])
    b = make_grid(tmp_path / "b", positions=STUDY[5:])
    code, err = export([a, "--diff", b, "-o", out_dir / "d.pdf"], capsys)
    assert code == 2 and "share no positions" in err
    assert list(out_dir.iterdir()) == []


def test_panels_share_one_colour_bar(tmp_path, out_dir):
    grids = [make_grid(tmp_path / f"g{k}", seed=k) for k in range(4)]
    out = out_dir / "p.svg"
    code, _ = export([*grids, "-o", out, "--panels", "2x2", "--panel-titles", "A,B,C,D"])
    groups = svg_groups(out)
    assert code == 0
    assert [g for g in groups if g.startswith("heatmap")] == [f"heatmap-{k}" for k in range(1, 5)]
    assert "colorbar" in groups and len(re.findall(r'id="colorbar"', out.read_text())) == 1
    assert {t for k in range(1, 5) for t in _texts(groups[f"heatmap-{k}"])} >= set("ABCD")


def test_panels_refuse_a_title_count_mismatch(tmp_path, out_dir, capsys):
    grids = [make_grid(tmp_path / f"g{k}", seed=k) for k in range(2)]
    code, err = export([*grids, "-o", out_dir / "p.png", "--panel-titles", "A,B,C"], capsys)
    assert code == 2 and "3 titles for 2 grids" in err


@pytest.fixture
def generalization(tmp_path):
    names = ["TriviaQA", "HotpotQA", "Movies"]
    runs = [{"name": n, "id": n, "content_hash": "0", "layer": 14, "position": "-1"} for n in names]
    matrix = np.array([[0.81, 0.62, 0.58], [0.66, 0.77, np.nan], [0.55, 0.6, 0.9]])
    return write_generalization(tmp_path / "gen", {"train_runs": runs, "test_runs": runs}, matrix)


def test_generalization_matrix_is_annotated_with_train_rows(generalization, out_dir):
    out = out_dir / "gen.svg"
    assert export([generalization, "-o", out]) == (0, "")
    heat = axis_texts(svg_groups(out)["heatmap"])
    assert heat["yticks"] == ["TriviaQA", "HotpotQA", "Movies"]
    assert heat["ylabel"] == ["Train dataset"] and heat["xlabel"] == ["Test dataset"]
    texts = set(_texts(svg_groups(out)["heatmap"]))
    assert {"0.81", "0.77", "0.90"} <= texts and "nan" not in texts
    assert open_bundle(generalization).kind == "generalization"


def test_generalization_refuses_grid_options(generalization, out_dir, capsys):
    code, err = export([generalization, "-o", out_dir / "gen.pdf", "--highlight", "1:2,a:b"],
                       capsys)
    assert code == 2 and "--highlight" in err and list(out_dir.iterdir()) == []


# ---------------------------------------------------------------- bad input


BAD = [
    (["--positions", "last_q,nowhere"], "'nowhere' is not in"),
    (["--metric", "f1"], "no metric 'f1'"),
    (["--positions", ""], "selects nothing"),
    (["--layers", "20:10"], "runs backwards"),
    (["--layers", "40"], "40 is not in"),
    (["--highlight", "4:40,first_answer:-1"], "layer 40 is not shown"),
    (["--highlight", "4:28,first_answer:-1", "--positions", "-8:-1"],
     "'first_answer' is not shown"),
    (["--highlight", "4:28"], "is not LAYERS,POSITIONS"),
    (["--width", "huge"], "is not a width"),
    (["--vmin", "0.9", "--vmax", "0.6"], "not an increasing range"),
    (["--panels", "2x"], "is not ROWSxCOLS"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[m for _, m in BAD])
def test_bad_options_fail_in_one_line_without_a_file(grid, out_dir, capsys, argv, message):
    code, err = export([grid.path, "-o", out_dir / "f.pdf", *argv], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("target,message", [
    ("f.jpg", "unsupported extension '.jpg'"), ("missing/f.png", "does not exist"),
    ("blocker/f.png", "does not exist"), (".", "is a folder")])
def test_bad_output_paths_fail_in_one_line(grid, out_dir, capsys, target, message):
    (out_dir / "blocker").write_text("a file, not a folder")
    code, err = export([grid.path, "-o", out_dir / target], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert sorted(p.name for p in out_dir.iterdir()) == ["blocker"]


def test_a_missing_bundle_is_refused_before_writing(tmp_path, out_dir, capsys):
    code, err = export([tmp_path / "nothing-here", "-o", out_dir / "f.pdf"], capsys)
    assert code == 2 and "nothing-here" in err and err.count("\n") == 1
    assert list(out_dir.iterdir()) == []


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(grid, out_dir, monkeypatch):
    from matplotlib.figure import Figure

    out = out_dir / "f.png"
    out.write_bytes(b"old figure")

    def broken_savefig(self, handle, **kwargs):
        handle.write(b"half a png")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(UserError, match="No space left on device"):
        export_grid(grid, out)
    assert out.read_bytes() == b"old figure"
    assert [p.name for p in out_dir.iterdir()] == ["f.png"]


def test_exporting_again_replaces_the_figure(grid, out_dir):
    out = out_dir / "f.png"
    out.write_bytes(b"old figure")
    export_grid(grid, out)
    assert out.read_bytes().startswith(b"\x89PNG")


# ---------------------------------------------------------------- parsing (pure)


def test_parsers_follow_grid_order_and_inclusive_ranges():
    assert parse_highlight("4:28,first_answer:-1") == Highlight(4, 28, "first_answer", "-1")
    assert parse_highlight("7,-1") == Highlight(7, 7, "-1", "-1")
    assert select_layers("0:3,10", LAYERS) == [0, 1, 2, 3, 10]
    assert select_layers("29:", LAYERS) == [29, 30, 31]
    assert select_positions("-1,last_q", STUDY) == ["-1", "last_q"]
    assert select_positions("exact_answer_last:-7", STUDY) == STUDY[5:9]
    with pytest.raises(UserError, match="twice"):
        select_positions("-1,-2,-1", STUDY)


def test_cli_values_may_start_with_a_minus(grid, out_dir):
    out = out_dir / "f.svg"
    assert export([grid.path, "-o", out, "--positions", "-8:-1", "--layers", "0:15"]) == (0, "")
    assert axis_texts(svg_groups(out)["heatmap"])["xticks"] == STUDY[7:]


def test_importing_the_cli_and_figures_does_not_load_matplotlib():
    code = ("import sys, probeheat.cli, probeheat.figures, probeheat.commands.export; "
            "probeheat.cli.build_parser(); "
            "sys.exit('matplotlib' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_pdf_text_maps_back_to_characters(grid, out_dir):
    """Every embedded glyph has a character, so labels like first_answer copy out of the PDF."""
    data = pdf_bytes_all(export_grid(grid, out_dir / "f.pdf").read_bytes())
    cmaps = re.findall(rb"begincmap(.*?)endcmap", data, re.S)
    targets = [bytes.fromhex(h.decode()).decode("utf-16-be") for cmap in cmaps
               for block in re.findall(rb"beginbf(?:range|char)(.*?)endbf(?:range|char)",
                                       cmap, re.S)
               for line in block.strip().splitlines()
               for h in re.findall(rb"<([0-9A-Fa-f]+)>", line)[2 if b"[" in line else 1:]]
    assert targets and "\x00" not in "".join(targets)
    assert set("first_answer") <= set("".join(targets))


def test_annotations_are_sized_to_fit_or_refused_in_one_line(grid, out_dir, tmp_path):
    from probeheat.figures.draw import MIN_TYPE

    root = ET.parse(export_grid(grid, out_dir / "f.svg", annotate=True, width="double",
                                layers="0:16")).getroot()
    sizes = {float(re.search(r"font-size: ([\d.]+)px", t.get("style")).group(1))
             for t in root.iter(f"{SVG}text") if re.fullmatch(r"0\.\d\d", "".join(t.itertext()))}
    assert len(sizes) == 1 and MIN_TYPE <= sizes.pop() <= 7.0
    with pytest.raises(UserError, match=r"--annotate: cells are .*\(use --width [\d.]+") as err:
        export_grid(grid, out_dir / "g.svg", annotate=True, width="single", layers="0:16")
    wide = float(re.search(r"--width ([\d.]+)", str(err.value)).group(1))
    assert export_grid(grid, out_dir / "g.svg", annotate=True, width=wide,
                       layers="0:16").exists()  # the width it names is enough


@pytest.fixture(scope="module")
def evidence_grids(tmp_path_factory):
    from probeheat.probe.grid import make_grid as probe_grid
    from probeheat.synthetic import write_synthetic_run

    root = tmp_path_factory.mktemp("evidence")
    run = write_synthetic_run(root / "run", n=240, n_layers=5, hidden=8, baselines=True)
    return (open_grid(probe_grid(run, root / "a", progress=False)),
            open_grid(probe_grid(run, root / "b", preset="paper", progress=False)),
            open_grid(probe_grid(run, root / "c", seeds=(0, 1, 2), progress=False)))


def test_the_baseline_strip_is_drawn_on_the_heatmap_scale(evidence_grids, out_dir):
    grid = evidence_grids[0]
    groups = svg_groups(export_grid(grid, out_dir / "f.svg", baselines=True, width="double"))
    strip = axis_texts(groups["baselines"])
    names = [n for n, _ in __import__("probeheat.figures.view", fromlist=["x"]).baseline_rows(grid)]
    assert strip["yticks"] == names and "(log)prob_max_all" in names
    assert "Baselines" in _texts(groups["baselines"])
    empty = evidence_grids[0].path.parent / "no-baselines"
    from probeheat.probe.grid import make_grid as probe_grid
    from probeheat.synthetic import write_synthetic_run

    plain = open_grid(probe_grid(write_synthetic_run(empty / "run", n=120, n_layers=3, hidden=8),
                                 empty / "grid", controls=False, progress=False))
    with pytest.raises(UserError, match="--baselines: .* holds no baselines"):
        export_grid(plain, out_dir / "g.svg", baselines=True)


def test_a_diff_figure_hatches_cells_that_do_not_differ_significantly(evidence_grids, out_dir):
    from probeheat.probe.compare import compare

    a, b, _ = evidence_grids
    groups = svg_groups(export_grid(a, out_dir / "d.svg", diff=b, width="double"))
    hatched = {g for g in groups if g.startswith("ns-")}
    expected = {f"ns-{i}-{j}" for i, j in np.argwhere(compare(a, b).not_significant())}
    assert hatched == expected and hatched
    assert any("not significant" in t for t in _texts(groups["legend-not-significant"]))


def test_annotations_carry_the_spread_over_seeds(evidence_grids, out_dir):
    grid = evidence_grids[2]
    root = ET.parse(export_grid(grid, out_dir / "s.svg", annotate=True, width="double")).getroot()
    texts = ["".join(t.itertext()) for t in root.iter(f"{SVG}text")]
    spreads = [t for t in texts if re.fullmatch(r"±\.\d\d", t)]  # a line under each value
    values = [t for t in texts if re.fullmatch(r"0\.\d\d", t)]
    assert spreads and len(spreads) == len(values) == 5 * 15
