"""The one rendering module: what the package draws onto a frame, and what it hides.

``draw_faces`` puts faces (box, five landmarks, label) onto a copy of a BGR frame: the CLI's
annotated images, the nodes' annotated topics and the bag/video outputs all come from it, so
that they look the same everywhere. ``anonymize`` pixelates or blurs faces (all of them, or those
nobody was named for) before an image leaves the robot (annotated topics,
``face-perception bag``/``video`` output).
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from face_perception.types import Category, Face

# -- drawing ------------------------------------------------------------------------------------
# BGR colours: a detected face (no identity asked), a known identity, an unknown face.
DETECTED = (0, 220, 0)
KNOWN = (0, 200, 0)
UNKNOWN = (0, 0, 230)
# One colour per landmark: left eye, right eye, nose, left mouth corner, right mouth corner.
LANDMARK_COLOURS = ((255, 0, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (0, 0, 255))


def face_label(category: Optional[Category], unknown: str = "unknown") -> str:
    """The label drawn for an identity: ``name confidence`` or the unknown label."""
    return f"{category.name} {category.confidence:.2f}" if category is not None else unknown


def draw_faces(image_bgr: np.ndarray, faces: Sequence[Face],
               categories: Optional[Sequence[Optional[Category]]] = None,
               unknown: str = "unknown", labels: Optional[Sequence[str]] = None) -> np.ndarray:
    """A copy of ``image_bgr`` with each face's box, landmarks and label.

    Without ``categories`` a face is labelled with its detection score; with them, with the
    identity and its confidence (green) or ``unknown`` (red). ``labels`` overrides the text.
    Line widths scale with the image so that the marks stay visible on large photos.
    """
    out = np.ascontiguousarray(image_bgr).copy()
    thick = max(1, int(round(max(out.shape[:2]) / 400)))
    labels = list(labels) if labels is not None else None
    for i, face in enumerate(faces):
        if categories is None:
            colour, text = DETECTED, f"{face.score:.2f}"
        else:
            cat = categories[i]
            colour = KNOWN if cat is not None else UNKNOWN
            text = face_label(cat, unknown)
        if labels is not None:
            text = labels[i]
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick, cv2.LINE_AA)
        # Text no wider than about the face, so small faces are not hidden by their label.
        font_scale = max(0.35, min(thick * 0.5, face.width / 110))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        ty = y1 - base - 2 if y1 - th - base - 2 >= 0 else y2 + th + 2
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base), colour, -1)
        cv2.putText(out, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thick, cv2.LINE_AA)
        if face.landmarks is not None:
            for (px, py), lm_colour in zip(face.landmarks, LANDMARK_COLOURS):
                cv2.circle(out, (int(round(float(px))), int(round(float(py)))), thick * 2 + 1,
                           lm_colour, -1, cv2.LINE_AA)
    return out


# -- anonymizing --------------------------------------------------------------------------------
ANONYMIZE_MODES = ("none", "unknown", "all")
ANONYMIZE_STYLES = ("pixelate", "blur")
# Cells across a pixelated face: at 8 an embedder no longer tells who it was (test_privacy).
PIXEL_CELLS = 8
# The box grows by this fraction of its size on each side: hair, ears and jaw line are cues too.
COVER_MARGIN = 0.25


def hidden_faces(faces: Sequence[Face], categories: Optional[Sequence[Optional[Category]]],
                 mode: str) -> list[Face]:
    """The faces ``mode`` hides: none, all, or those without a name (``categories`` None or a
    None entry means nobody was named)."""
    if mode not in ANONYMIZE_MODES:
        raise ValueError(f"anonymize mode must be one of {', '.join(ANONYMIZE_MODES)}, "
                         f"got {mode!r}")
    if mode == "none":
        return []
    if mode == "all" or categories is None:
        return list(faces)
    if len(categories) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(categories)} identities")
    return [f for f, c in zip(faces, categories) if c is None]


def cover_box(face: Face, shape: Sequence[int], margin: float = COVER_MARGIN) -> tuple[int, ...]:
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
    if style not in ANONYMIZE_STYLES:
        raise ValueError(f"anonymize style must be one of {', '.join(ANONYMIZE_STYLES)}, "
                         f"got {style!r}")
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
