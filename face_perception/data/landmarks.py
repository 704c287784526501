"""Per-image five-point landmark files: LFW's ``lfw_landmark.txt`` (path + 10 numbers) and
VGGFace2's ``bb_landmark/loose_landmark_<split>.csv`` (NAME_ID + P1X..P5Y), plus image lists.

Points are (x, y) pixels of the original image, in RetinaFace's order (left eye, right eye,
nose tip, left mouth corner, right mouth corner; left/right as seen in the image), which is
the order both files use. Every error names ``file:line``.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Dict, List, Sequence, Union

import numpy as np

from face_perception.data.errors import DatasetError

VGGFACE2_COLUMNS = ("NAME_ID", "P1X", "P1Y", "P2X", "P2Y", "P3X", "P3Y", "P4X", "P4Y",
                    "P5X", "P5Y")


def _text_lines(path: Path, what: str) -> List[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not a text file ({exc})") from None


def _points(values: Sequence[str], where: str) -> np.ndarray:
    try:
        pts = np.array([float(v) for v in values], dtype=np.float32).reshape(5, 2)
    except ValueError:
        raise DatasetError(f"{where}: landmark coordinates must be numbers, got "
                           f"{' '.join(values)!r}") from None
    if not all(math.isfinite(v) for v in pts.ravel()):
        raise DatasetError(f"{where}: landmark coordinates must be finite, got {pts.tolist()}")
    return pts


def _add_row(out: Dict[str, np.ndarray], key: str, coords, where: str) -> None:
    """One image's five points, under a key no earlier line used."""
    if key in out:
        raise DatasetError(f"{where}: {key} is listed twice")
    out[key] = _points(coords, where)


def _non_empty(out: Dict[str, np.ndarray], path: Path) -> Dict[str, np.ndarray]:
    if not out:
        raise DatasetError(f"{path}: no landmarks in the file")
    return out


def read_landmark_list(path: Union[str, os.PathLike]) -> Dict[str, np.ndarray]:
    """``lfw_landmark.txt``: lines ``<relative image path> x1 y1 x2 y2 ... x5 y5`` separated by
    tabs or spaces. Returns {relative path (``/`` separators): 5x2 float32 points}."""
    path = Path(path)
    out: Dict[str, np.ndarray] = {}
    for lineno, line in enumerate(_text_lines(path, "landmark file"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 11:
            raise DatasetError(f"{where}: expected 11 columns (image path and 5 x,y points), "
                               f"got {len(fields)}: {line.strip()!r}")
        _add_row(out, fields[0].replace("\\", "/"), fields[1:], where)
    return _non_empty(out, path)


def read_vggface2_landmarks(path: Union[str, os.PathLike]) -> Dict[str, np.ndarray]:
    """VGGFace2 ``loose_landmark_<split>.csv``: a header ``NAME_ID,P1X,P1Y,...,P5Y`` then rows
    ``"n000002/0001_01",x1,y1,...``. Returns {NAME_ID (identity/image, no extension): 5x2}."""
    path = Path(path)
    lines = _text_lines(path, "landmark file")
    out: Dict[str, np.ndarray] = {}
    rows = csv.reader(lines)
    header = next(rows, None)
    if header is None or [h.strip() for h in header] != list(VGGFACE2_COLUMNS):
        raise DatasetError(f"{path}:1: expected the header {','.join(VGGFACE2_COLUMNS)}, got "
                           f"{(lines[0] if lines else '(empty file)')!r}")
    for lineno, row in enumerate(rows, start=2):
        if not row or not "".join(row).strip():
            continue
        where = f"{path}:{lineno}"
        if len(row) != len(VGGFACE2_COLUMNS):
            raise DatasetError(f"{where}: expected {len(VGGFACE2_COLUMNS)} columns (NAME_ID and "
                               f"5 x,y points), got {len(row)}: {lines[lineno - 1]!r}")
        _add_row(out, row[0].strip(), row[1:], where)
    return _non_empty(out, path)


def read_image_list(path: Union[str, os.PathLike]) -> List[str]:
    """VGGFace2 ``meta/train_list.txt``: one relative image path per line
    (``n000002/0001_01.jpg``: identity folder / image). Blank lines are ignored."""
    path = Path(path)
    out: List[str] = []
    for lineno, line in enumerate(_text_lines(path, "image list"), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 1 or "/" not in fields[0].replace("\\", "/"):
            raise DatasetError(f"{path}:{lineno}: expected one path '<identity>/<image>' per "
                               f"line, got {line.strip()!r}")
        out.append(fields[0].replace("\\", "/"))
    if not out:
        raise DatasetError(f"{path}: the image list is empty")
    return out


def write_landmark_list(path: Union[str, os.PathLike], landmarks: Dict[str, np.ndarray]) -> Path:
    """Write {relative path: 5x2 points} as an ``lfw_landmark.txt``-style file (tab separated;
    whole numbers are written without decimals, as the published file has them)."""
    from face_perception.files import atomic_write_text

    lines = []
    for key, pts in landmarks.items():
        values = np.asarray(pts, dtype=np.float64).reshape(-1)
        if values.size != 10:
            raise DatasetError(f"{key}: need 5 (x, y) points, got {values.size} numbers")
        lines.append("\t".join([key] + [f"{v:g}" for v in values]))
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_vggface2_landmarks(path: Union[str, os.PathLike],
                             landmarks: Dict[str, np.ndarray]) -> Path:
    """Write {NAME_ID: 5x2 points} as a VGGFace2 ``loose_landmark_*.csv``."""
    from face_perception.files import atomic_write_text

    lines = [",".join(f'"{c}"' for c in VGGFACE2_COLUMNS)]
    for key, pts in landmarks.items():
        values = np.asarray(pts, dtype=np.float64).reshape(-1)
        if values.size != 10:
            raise DatasetError(f"{key}: need 5 (x, y) points, got {values.size} numbers")
        lines.append(",".join([f'"{key}"'] + [f"{v:.3f}" for v in values]))
    return atomic_write_text(path, "\n".join(lines) + "\n")
