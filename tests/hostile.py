"""Helpers for hostile-input tests: in-process CLI runs and bundle surgery."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from probeheat.bundle.manifest import build_manifest, seal
from probeheat.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "artifacts" / "samples"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def one_line(self) -> bool:
        """The refusal users get: a non-zero exit and exactly one line on stderr, naming the
        command (verify prints the problem itself: its lines are the report)."""
        lines = self.err.strip().splitlines()
        return (self.code != 0 and len(lines) == 1 and "Traceback" not in self.err
                and (lines[0].startswith("probeheat ") or self.code == 1))


def cli(*args) -> Result:
    """`probeheat ARGS` in this process; an exception other than UserError propagates."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse refusing an argument
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


def copy_sample(name: str, tmp: Path) -> Path:
    dst = tmp / name
    shutil.copytree(SAMPLES / name, dst)
    return dst


def refresh_manifest(root: Path) -> None:
    """Re-checksum after a deliberate edit, so only the semantic checks can catch it."""
    old = json.loads((root / "manifest.json").read_text())
    new = build_manifest(root, old["kind"], old["id"], old["created"], old["writer"])
    new = seal({**new, "format_version": old["format_version"]})
    (root / "manifest.json").write_text(json.dumps(new))


def edit_json(path: Path, change) -> None:
    """Load, change in place (``change(doc)``; its return value is ignored), write back."""
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def set_header(path: Path, change) -> None:
    """Rewrite a safetensors header (``change(header_dict)`` in place); data stays as is."""
    import struct

    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    change(header)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def first_shard(run: Path, suffix: str = ".safetensors") -> Path:
    return sorted((run / "shards").glob(f"*{suffix}"))[0]
