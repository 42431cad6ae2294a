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
import os
import sys
from pathlib import Path

from ..errors import UserError
from .manifest import DAMAGED_FIX

# safetensors dtype -> array typecode, for the types this reader turns into numbers
TYPECODES = {"F64": "d", "F32": "f", "I64": "q", "I32": "i", "I16": "h", "I8": "b",
             "U8": "B", "BOOL": "B", "U16": "H", "U32": "I", "U64": "Q"}
# bits per value of every dtype safetensors reads (headers of any of them are checked)
ITEM_BITS = {"BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
             "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
             "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
             "F64": 64, "I64": 64, "U64": 64, "C64": 64}
MAX_HEADER = 100_000_000  # safetensors' own limits: header bytes, JSON nesting, u64 sizes
MAX_NESTING = 127  # containers inside one another, the header object included
U64 = 2 ** 64


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
        """One tensor's values (ints, floats; bools as 0/1), kept in an array.array."""
        dtype, shape, (begin, end) = self.entries[name]
        if dtype not in TYPECODES:
            raise UserError(str(self.path), f"tensor {name!r} has dtype {dtype}, which only "
                            "the numpy reader reads", DAMAGED_FIX)
        code = TYPECODES[dtype]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + begin)
            raw = f.read(end - begin)
        if len(raw) != end - begin:
            raise UserError(str(self.path), f"tensor {name!r} is cut short", DAMAGED_FIX)
        values = array.array(code)
        values.frombytes(raw)
        if sys.byteorder != "little":  # safetensors stores little-endian values
            values.byteswap()
        return Cells(shape, values)


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
            size = os.fstat(f.fileno()).st_size
            if n > MAX_HEADER or 8 + n > size:
                raise bad(f"header of {n} bytes in a file of {size}")
            text = f.read(n)
    except FileNotFoundError:
        raise UserError(str(path), "file listed in the manifest is missing", DAMAGED_FIX) from None
    except OSError as exc:
        raise UserError(str(path), f"cannot be read ({exc.strerror or exc})",
                        "check the file's permissions") from None
    header = _parse(text, bad)
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise bad("__metadata__ is not an object of strings")
    entries = {name: _entry(name, entry, bad) for name, entry in header.items()}
    _check_offsets(entries, size - 8 - n, bad)
    return entries, 8 + n


def _parse(text: bytes, bad) -> dict:
    """The header's JSON, refusing what safetensors' parser refuses: NaN and Infinity,
    negative numbers (sizes are unsigned), lone surrogates, more than 127 nested levels."""
    def constant(name: str):
        raise ValueError(f"{name} is not JSON")

    def integer(digits: str) -> int:
        if digits.startswith("-"):
            raise ValueError(f"negative number {_short(digits)}")
        return int(digits)

    try:
        header = json.loads(text.decode("utf-8"), parse_constant=constant, parse_int=integer)
        _check_nesting(header)
        json.dumps(header, ensure_ascii=False).encode("utf-8")  # a lone surrogate: refused
    except RecursionError:
        raise bad(f"header nested more than {MAX_NESTING} levels deep") from None
    except (UnicodeError, ValueError) as exc:
        raise bad(f"header is not JSON: {_short(str(exc))}") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    return header


def _check_nesting(value: object) -> None:
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)) and level > MAX_NESTING:
            raise RecursionError
        if isinstance(item, dict):
            stack.extend((v, level + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, level + 1) for v in item)


def _short(text: str, limit: int = 60) -> str:
    """A value for an error line: at most ``limit`` characters."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _entry(name: str, entry: object, bad) -> tuple[str, list[int], tuple[int, int]]:
    shown = _short(repr(name))
    if not isinstance(entry, dict):
        raise bad(f"entry {shown} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in ITEM_BITS:
        raise bad(f"tensor {shown} has unknown dtype {_short(repr(dtype))}")
    if not isinstance(shape, list) or not all(_count(s) for s in shape):
        raise bad(f"tensor {shown} has shape {_short(repr(shape))}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_count(o) for o in offsets):
        raise bad(f"tensor {shown} has data_offsets {_short(repr(offsets))}")
    begin, end = offsets
    count = 1
    for dim in shape:  # safetensors multiplies in u64 and refuses an overflow
        count *= dim
        if count >= U64:
            raise bad(f"tensor {shown} has more than 2**64 values")
    bits = count * ITEM_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        raise bad(f"tensor {shown}: {end - begin} bytes for shape {_short(repr(shape))} "
                  f"of {dtype}")
    return dtype, shape, (begin, end)


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < U64


def _check_offsets(entries: dict, data_size: int, bad) -> None:
    """The tensors' bytes follow one another from 0 to the end of the file, as written."""
    at = 0
    for name, (_, _, (begin, end)) in sorted(entries.items(), key=lambda kv: kv[1][2]):
        if begin != at:
            raise bad(f"tensor {_short(repr(name))} starts at byte {begin}, not {at}")
        at = end
    if at != data_size:
        raise bad(f"the tensors end at byte {at} but the file holds {data_size} bytes of "
                  "data")


class Cells:
    """A small tensor of numbers: ``[i, j]`` (or ``[i]``) gives a number, ``[i]`` of a
    matrix its row; ``shape``, ``tolist()``; numpy reads it (``__array__``). ``flat``: the
    values in row order, a list or an array.array (8 bytes a value, as numpy keeps them)."""

    def __init__(self, shape, flat) -> None:
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
        return list(self.flat[i * self._stride:(i + 1) * self._stride])

    def rows(self) -> list[list]:
        return [self[i] for i in range(self.shape[0])]

    def tolist(self) -> list:
        return self.rows() if len(self.shape) == 2 else list(self.flat)

    def take_columns(self, columns: list[int]) -> Cells:
        """The matrix of these columns, in this order."""
        taken = [row[j] for row in self.rows() for j in columns]
        if isinstance(self.flat, array.array):
            taken = array.array(self.flat.typecode, taken)
        return Cells((self.shape[0], len(columns)), taken)

    def __array__(self, dtype=None, copy=None):
        import numpy as np

        return np.array(self.flat, dtype=dtype).reshape(self.shape)  # a copy, always

    def __repr__(self) -> str:
        return f"Cells(shape={self.shape})"
