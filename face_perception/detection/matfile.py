"""Minimal reader of MATLAB 5.0 ``.mat`` files, for the WIDER FACE evaluation split lists.

The official WIDER FACE toolkit ships its easy/medium/hard face lists (``wider_easy_val.mat``,
...) as MATLAB 5.0 files holding cell arrays of strings and numeric arrays. This reads exactly
that subset with numpy and zlib (no scipy): numeric arrays, character arrays and cell arrays,
compressed or not. Structs, sparse and complex arrays, function handles and HDF5-based v7.3
files raise MatFileError. Nothing is executed or unpickled; decompressed sizes are bounded.
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np

# Data element types (MATLAB 5.0 MAT-file format, table 1-1).
MI_MATRIX = 14
MI_COMPRESSED = 15
_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8",
            13: "u8"}
_TEXT = {16: "utf-8", 17: "utf-16", 18: "utf-32"}
# Array classes (array flags, low byte).
CLASS_CELL = 1
CLASS_STRUCT = 2
CLASS_CHAR = 4
CLASS_SPARSE = 5
_CLASS_DTYPE = {6: "f8", 7: "f4", 8: "i1", 9: "u1", 10: "i2", 11: "u2", 12: "i4", 13: "u4",
                14: "i8", 15: "u8"}
FLAG_COMPLEX = 0x0800
MAX_DECOMPRESSED = 1 << 30  # refuse zip bombs posing as annotation files


class MatFileError(ValueError):
    """A .mat file this reader cannot read; the message names the file and the reason."""


def load_mat(path: os.PathLike) -> dict:
    """Variables of a MATLAB 5.0 file: name -> ndarray (numeric, Fortran order reshaped to the
    stored dimensions), str (1-row char arrays) or object ndarray (cell arrays)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MAT file not found: {path}")
    data = path.read_bytes()
    if len(data) < 128:
        raise MatFileError(f"{path}: too short for a MAT file header")
    if data[:10] == b"MATLAB 7.3" or data[:4] == b"\x89HDF":
        raise MatFileError(f"{path}: MATLAB 7.3 (HDF5) files are not supported; save with -v7")
    if not data.startswith(b"MATLAB 5.0"):
        raise MatFileError(f"{path}: not a MATLAB 5.0 MAT file")
    endian = data[126:128]
    if endian == b"IM":
        order = "<"
    elif endian == b"MI":
        order = ">"
    else:
        raise MatFileError(f"{path}: bad endian indicator {endian!r}")
    reader = _Reader(path, order)
    out = {}
    for name, value in reader.elements(data, 128):
        if name:
            out[name] = value
    return out


class _Reader:
    def __init__(self, path: Path, order: str):
        self.path = path
        self.order = order

    def fail(self, why: str):
        raise MatFileError(f"{self.path}: {why}")

    def tag(self, buf: bytes, pos: int) -> tuple[int, int, int, bool]:
        """(type, nbytes, data start, small) of the element at ``pos``."""
        if pos + 8 > len(buf):
            self.fail(f"truncated element tag at byte {pos}")
        mtype, nbytes = struct.unpack_from(self.order + "II", buf, pos)
        if mtype >> 16:  # small data element: 2-byte size, 2-byte type, data in 4 bytes
            return mtype & 0xFFFF, mtype >> 16, pos + 4, True
        if pos + 8 + nbytes > len(buf):
            self.fail(f"element at byte {pos} announces {nbytes} bytes past the end")
        return mtype, nbytes, pos + 8, False

    def elements(self, buf: bytes, pos: int):
        """Top-level variables: yields (name, value)."""
        while pos + 8 <= len(buf):
            mtype, nbytes, start, small = self.tag(buf, pos)
            end = start + nbytes
            if mtype == MI_COMPRESSED:
                inner = self.inflate(buf[start:end])
                yield from self.elements(inner, 0)
                pos = end  # compressed elements are not padded
                continue
            if mtype == MI_MATRIX:
                yield self.matrix(buf[start:end])
            pos = start + 4 if small else start + ((nbytes + 7) & ~7)

    def inflate(self, blob: bytes) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(blob, MAX_DECOMPRESSED)
        except zlib.error as exc:
            self.fail(f"corrupt compressed element ({exc})")
        if d.unconsumed_tail:
            self.fail(f"compressed element expands beyond {MAX_DECOMPRESSED} bytes")
        return out

    def sub(self, buf: bytes, pos: int) -> tuple[int, bytes, int]:
        """Read one sub-element: (type, payload, next position)."""
        mtype, nbytes, start, small = self.tag(buf, pos)
        payload = buf[start:start + nbytes]
        nxt = start + 4 if small else start + ((nbytes + 7) & ~7)
        return mtype, payload, nxt

    def numbers(self, mtype: int, payload: bytes) -> np.ndarray:
        if mtype not in _NUMERIC:
            self.fail(f"unexpected data type {mtype} in a numeric sub-element")
        return np.frombuffer(payload, dtype=np.dtype(self.order + _NUMERIC[mtype]))

    def matrix(self, buf: bytes) -> tuple[str, object]:
        if not buf:  # an empty cell entry
            return "", np.zeros((0, 0))
        mtype, payload, pos = self.sub(buf, 0)
        flags = self.numbers(mtype, payload)
        if len(flags) < 1:
            self.fail("array flags missing")
        cls = int(flags[0]) & 0xFF
        mtype, payload, pos = self.sub(buf, pos)
        dims = tuple(int(d) for d in self.numbers(mtype, payload))
        mtype, payload, pos = self.sub(buf, pos)
        name = payload.decode("ascii", errors="replace")
        count = int(np.prod(dims)) if dims else 0
        if cls == CLASS_CELL:
            cells = np.empty(count, dtype=object)
            for i in range(count):
                mtype, nbytes, start, _ = self.tag(buf, pos)
                if mtype != MI_MATRIX:
                    self.fail(f"cell entry of type {mtype}, expected a matrix")
                cells[i] = self.matrix(buf[start:start + nbytes])[1]
                pos = start + ((nbytes + 7) & ~7)
            return name, cells.reshape(dims, order="F")
        if cls in (CLASS_STRUCT, CLASS_SPARSE) or int(flags[0]) & FLAG_COMPLEX:
            self.fail(f"variable {name!r}: structs, sparse and complex arrays are not supported")
        mtype, payload, pos = self.sub(buf, pos)
        if cls == CLASS_CHAR:
            if mtype in _TEXT:
                text = payload.decode(_TEXT[mtype])
            else:
                text = "".join(map(chr, self.numbers(mtype, payload)))
            if len(dims) == 2 and dims[0] <= 1:
                return name, text
            chars = np.array(list(text), dtype="<U1").reshape(dims, order="F")
            return name, np.array(["".join(row) for row in chars])
        if cls not in _CLASS_DTYPE:
            self.fail(f"variable {name!r}: unsupported array class {cls}")
        values = self.numbers(mtype, payload).astype(_CLASS_DTYPE[cls])
        if values.size != count:
            self.fail(f"variable {name!r}: {values.size} values for dimensions {dims}")
        return name, values.reshape(dims, order="F")
