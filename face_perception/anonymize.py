"""Anonymised images: faces pixelated or blurred (all of them, or those nobody was named for)
before an image leaves the robot (annotated topics, ``face-perception bag``/``video`` output)."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from face_perception.types import Category, Face

MODES = ("none", "unknown", "all")
STYLES = ("pixelate", "blur")
# Cells across a pixelated face: at 8 an embedder no longer tells who it was (test_anonymize).
PIXEL_CELLS = 8
# The box grows by this fraction of its size on each side: hair, ears and jaw line are cues too.
MARGIN = 0.25


def hidden_faces(faces: Sequence[Face], categories: Optional[Sequence[Optional[Category]]],
                 mode: str) -> list[Face]:
    """The faces ``mode`` hides: none, all, or those without a name (``categories`` None or a
    None entry means nobody was named)."""
    if mode not in MODES:
        raise ValueError(f"anonymize mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == "none":
        return []
    if mode == "all" or categories is None:
        return list(faces)
    if len(categories) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(categories)} identities")
    return [f for f, c in zip(faces, categories) if c is None]


def cover_box(face: Face, shape: Sequence[int], margin: float = MARGIN) -> tuple[int, ...]:
    """(x1, y1, x2, y2) integer region hidden for ``face``: its box grown by ``margin`` and
    rounded outwards, clipped to the image."""
    x1, y1, x2, y2 = (float(v) for v in face.box[:4])
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    h, w = int(shape[0]), int(shape[1])
    return (max(0, int(np.floor(x1 - dx))), max(0, int(np.floor(y1 - dy))),
            min(w, int(np.ceil(x2 + dx))), min(h, int(np.ceil(y2 + dy))))


def anonymize(image_bgr: np.ndarray, faces: Sequence[Face],
              categories: Optional[Sequence[Optional[Category]]] = None, mode: str = "all",
              style: str = "pixelate") -> np.ndarray:
    """A copy of ``image_bgr`` with the faces ``mode`` selects pixelated or blurred."""
    if style not in STYLES:
        raise ValueError(f"anonymize style must be one of {', '.join(STYLES)}, got {style!r}")
    out = image_bgr.copy()
    for face in hidden_faces(faces, categories, mode):
        x1, y1, x2, y2 = cover_box(face, out.shape)
        if x2 <= x1 or y2 <= y1:
            continue
        region = out[y1:y2, x1:x2]
        if style == "pixelate":
            cells = max(1, min(PIXEL_CELLS, region.shape[1], region.shape[0]))
            small = cv2.resize(region, (cells, cells), interpolation=cv2.INTER_AREA)
            out[y1:y2, x1:x2] = cv2.resize(small, (region.shape[1], region.shape[0]),
                                           interpolation=cv2.INTER_NEAREST)
        else:
            # A kernel half the face wide: features merge into a smooth blob.
            k = max(3, (max(region.shape[:2]) // 2) | 1)
            out[y1:y2, x1:x2] = cv2.GaussianBlur(region, (k, k), 0)
    return out
