"""Draw faces (box, landmarks, label) onto a copy of a BGR frame, for annotated outputs."""
from __future__ import annotations

from typing import Optional, Sequence

import cv2
import numpy as np

from face_perception.types import Category, Face

KNOWN = (0, 200, 0)
UNKNOWN = (0, 0, 230)
DETECTED = (255, 160, 0)
# One colour per landmark: eyes, nose, mouth corners.
LANDMARK_COLOURS = ((255, 0, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (0, 128, 255))


def draw_faces(image_bgr: np.ndarray, faces: Sequence[Face],
               categories: Optional[Sequence[Optional[Category]]] = None,
               unknown: str = "unknown") -> np.ndarray:
    """A copy of ``image_bgr`` with each face's box, landmarks and label (score or identity)."""
    out = image_bgr.copy()
    scale = max(out.shape[:2]) / 640.0
    thick = max(1, int(round(2 * scale)))
    for i, face in enumerate(faces):
        if categories is None:
            colour, label = DETECTED, f"{face.score:.2f}"
        else:
            cat = categories[i]
            colour = KNOWN if cat is not None else UNKNOWN
            label = f"{cat.name} {cat.confidence:.2f}" if cat is not None else unknown
        x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thick)
        cv2.putText(out, label, (x1, max(0, y1 - 4 * thick)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.5 * scale, colour, thick, cv2.LINE_AA)
        if face.landmarks is not None:
            for (x, y), c in zip(face.landmarks, LANDMARK_COLOURS):
                cv2.circle(out, (int(round(float(x))), int(round(float(y)))), thick + 1, c, -1)
    return out
