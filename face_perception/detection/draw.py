"""Draw detected faces (box, five landmarks, score) onto a BGR image for inspection."""
from __future__ import annotations

from typing import Iterable, Optional

import cv2
import numpy as np

from face_perception.types import Face

# One colour per landmark (BGR): left eye, right eye, nose, left mouth, right mouth.
LANDMARK_COLOURS = [(255, 0, 0), (0, 255, 255), (255, 0, 255), (0, 255, 0), (0, 0, 255)]
BOX_COLOUR = (0, 220, 0)


def draw_faces(image_bgr: np.ndarray, faces: Iterable[Face],
               labels: Optional[Iterable[str]] = None) -> np.ndarray:
    """A copy of ``image_bgr`` with each face's box, landmarks and score (or label) drawn.

    Line widths scale with the image so that the marks stay visible on large photos.
    """
    out = np.ascontiguousarray(image_bgr).copy()
    thick = max(1, int(round(max(out.shape[:2]) / 400)))
    labels = list(labels) if labels is not None else None
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = (int(round(v)) for v in face.box)
        cv2.rectangle(out, (x1, y1), (x2, y2), BOX_COLOUR, thick, cv2.LINE_AA)
        text = labels[i] if labels is not None else f"{face.score:.2f}"
        # Text no wider than about the face, so small faces are not hidden by their label.
        font_scale = max(0.35, min(thick * 0.5, face.width / 110))
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thick)
        ty = y1 - base - 2 if y1 - th - base - 2 >= 0 else y2 + th + 2
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + base), BOX_COLOUR, -1)
        cv2.putText(out, text, (x1 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thick, cv2.LINE_AA)
        if face.landmarks is not None:
            for (px, py), colour in zip(face.landmarks, LANDMARK_COLOURS):
                cv2.circle(out, (int(round(px)), int(round(py))), thick * 2 + 1, colour, -1,
                           cv2.LINE_AA)
    return out
