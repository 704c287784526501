"""The one drawing module: faces (box, five landmarks, label) onto a copy of a BGR frame.

The CLI's annotated images, the nodes' annotated topics and the bag/video outputs all come from
``draw_faces`` so that they look the same everywhere.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from face_perception.types import Category, Face

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
