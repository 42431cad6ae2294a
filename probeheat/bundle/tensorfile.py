"""A safetensors file read with the standard library alone: its header, and small tensors as
Python numbers.

The viewer's first frame needs a grid's metrics (a few thousand numbers) and nothing of
numpy, whose import is a third of the viewer's start-up. ``TensorFile`` offers the part of
safetensors' ``safe_open`` handle that the checks use (``keys``, ``get_slice(name)
.get_shape()/.get_dtype()``), and ``values`` reads one tensor into ``Cells``. The header is
validated as safetensors validates it: a JSON object of known dtypes, non-negative shapes,
and data offsets that tile the data exactly, so a file refused here is refused there too.
"""

from __future__ import annotations

import array
import json
import math
import sys
from pathlib import Path

from ..errors import UserError
from .manifest import DAMAGED_FIX

# safetensors dtype -> (array typecode, bytes per value); the types grid tensors use
TYPECODES = {"F64": ("d", 8), "F32": ("f", 4), "I64": ("q", 8), "I32": ("i", 4),
             "I16": ("h", 2), "I8": ("b", 1), "U8": ("B", 1), "BOOL": ("B", 1)}
ITEM_SIZES = {**{k: v[1] for k, v in TYPECODES.items()}, "F16": 2, "BF16": 2, "U16": 2,
              "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1}
MAX_HEADER = 100_000_000  # safetensors' own limit on the JSON header


class _Slice:
    def __init__(self, dtype: str, shape: list[int]) -> None:
        self._dtype, self._shape = dtype, shape

    def get_dtype(self) -> str:
        return self._dtype

    def get_shape(self) -> list[int]:
        return list(self._shape)


class TensorFile:
    """The header of a safetensors file (validated), and its tensors on request."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries, self.data_start = read_header(self.path)

    def keys(self) -> list[str]:
        """The tensors' names, sorted (as safetensors lists them)."""
        return sorted(self.entries)

    def get_slice(self, name: str) -> _Slice:
        dtype, shape, _ = self.entries[name]
        return _Slice(dtype, shape)

    def values(self, name: str) -> Cells:
        """One tensor's values as Python numbers (ints, floats; bools as 0/1)."""
        dtype, shape, (begin, end) = self.entries[name]
        if dtype not in TYPECODES:
            raise UserError(str(self.path), f"tensor {name!r} has dtype {dtype}, which only "
                            "the numpy reader reads", DAMAGED_FIX)
        code = TYPECODES[dtype][0]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            raw = f.read(end - begin)
        if len(raw) != end - begin:
            raise UserError(str(self.path), f"tensor {name!r} is cut short", DAMAGED_FIX)
        values = array.array(code)
        values.frombytes(raw)
        if sys.byteorder != "little":  # safetensors stores little-endian values
            values.byteswap()
        return Cells(shape, values.tolist())


def read_header(path: Path) -> tuple[dict[str, tuple[str, list[int], tuple[int, int]]], int]:
    """{name: (dtype, shape, (begin, end))} and where the data starts; a header safetensors
    would refuse is a UserError naming the problem."""
    def bad(problem: str) -> UserError:
        return UserError(str(path), f"not a readable safetensors file ({problem})", DAMAGED_FIX)

    try:
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise bad("shorter than its 8-byte header size")
            n = int.from_bytes(prefix, "little")
            size = Path(path).stat().st_size
            if n > MAX_HEADER or 8 + n > size:
                raise bad(f"header of {n} bytes in a file of {size}")
            text = f.read(n)
    except FileNotFoundError:
        raise UserError(str(path), "file listed in the manifest is missing", DAMAGED_FIX) from None
    try:
        header = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise bad(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    entries = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        entries[name] = _entry(name, entry, bad)
    _check_offsets(entries, size - 8 - n, bad)
    return entries, 8 + n


def _entry(name: str, entry: object, bad) -> tuple[str, list[int], tuple[int, int]]:
    if not isinstance(entry, dict):
        raise bad(f"entry {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in ITEM_SIZES:
        raise bad(f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_count(s) for s in shape):
        raise bad(f"tensor {name!r} has shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise bad(f"tensor {name!r} has data_offsets {offsets!r}")
    begin, end = offsets
    if end - begin != math.prod(shape) * ITEM_SIZES[dtype]:
        raise bad(f"tensor {name!r}: {end - begin} bytes for shape {shape} of {dtype}")
    return dtype, shape, (begin, end)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_offsets(entries: dict, data_size: int, bad) -> None:
    """The tensors' bytes follow one another from 0 to the end of the file, as written."""
    at = 0
    for name, (_, _, (begin, end)) in sorted(entries.items(), key=lambda kv: kv[1][2]):
        if begin != at:
            raise bad(f"tensor {name!r} starts at byte {begin}, not {at}")
        at = end
    if at != data_size:
        raise bad(f"the tensors end at byte {at} of {data_size} bytes of data")


class Cells:
    """A small tensor as Python numbers: ``[i, j]`` (or ``[i]``) gives a number, ``[i]`` of
    a matrix its row as a list; ``shape``, ``tolist()``; numpy reads it (``__array__``)."""

    def __init__(self, shape, flat: list) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.flat = flat
        if len(flat) != math.prod(self.shape):
            raise ValueError(f"{len(flat)} values for shape {self.shape}")
        self._stride = self.shape[1] if len(self.shape) == 2 else 1

    @property
    def size(self) -> int:
        return len(self.flat)

    def __len__(self) -> int:
        return self.shape[0] if self.shape else 0

    def __getitem__(self, index):
        if len(self.shape) == 1:
            return self.flat[index]
        if len(self.shape) != 2:
            raise TypeError("Cells index vectors and matrices only")
        if isinstance(index, tuple):
            i, j = index
            if not (-self.shape[0] <= i < self.shape[0] and -self.shape[1] <= j < self.shape[1]):
                raise IndexError(f"{index} is outside shape {self.shape}")
            return self.flat[(i % self.shape[0]) * self._stride + j % self.shape[1]]
        i = range(self.shape[0])[index]  # IndexError as a list's
        return self.flat[i * self._stride:(i + 1) * self._stride]

    def rows(self) -> list[list]:
        return [self[i] for i in range(self.shape[0])]

    def tolist(self) -> list:
        return self.rows() if len(self.shape) == 2 else list(self.flat)

    def take_columns(self, columns: list[int]) -> Cells:
        """The matrix of these columns, in this order."""
        return Cells((self.shape[0], len(columns)),
                     [row[j] for row in self.rows() for j in columns])

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        return np.array(self.flat, dtype=dtype).reshape(self.shape)

    def __repr__(self) -> str:
        return f"Cells(shape={self.shape})"
