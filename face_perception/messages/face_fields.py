"""Where a Face goes in a vision_msgs/Detection2D, without ROS (shared by nodes and bag tools).

Standard fields carry the standard meaning: ``bbox.center`` is the box centre in image pixels,
``bbox.size_x/size_y`` its width/height, ``results[0].hypothesis`` the class ("face" or an
identity) and score. The 5 landmarks ride in ``Detection2D.id`` as compact JSON
(``{"landmarks":[[x,y],...]}``), a free-form string that standard consumers treat as an opaque
id; see docs/topics.md.
"""
from __future__ import annotations

import json
from typing import Optional

import numpy as np

LANDMARKS_KEY = "landmarks"


class DetectionFieldError(ValueError):
    """A Detection2D whose fields cannot describe a face (negative size, bad landmark JSON)."""


def box_to_center_size(box) -> tuple[float, float, float, float]:
    """(x1, y1, x2, y2) -> (cx, cy, width, height) in pixels."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    return (x1 + x2) / 2.0, (y1 + y2) / 2.0, x2 - x1, y2 - y1


def center_size_to_box(cx: float, cy: float, width: float, height: float) -> np.ndarray:
    """(cx, cy, width, height) -> float32 (x1, y1, x2, y2); refuses negative sizes."""
    if not (np.isfinite([cx, cy, width, height]).all()) or width < 0 or height < 0:
        raise DetectionFieldError(
            f"detection box is not a valid box: centre ({cx}, {cy}), size {width}x{height}")
    return np.array([cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2],
                    dtype=np.float32)


def landmarks_to_field(landmarks: Optional[np.ndarray]) -> str:
    """Landmarks (5x2) -> the ``Detection2D.id`` string ('' when there are none)."""
    if landmarks is None:
        return ""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return json.dumps({LANDMARKS_KEY: [[round(float(x), 1), round(float(y), 1)] for x, y in pts]},
                      separators=(",", ":"))


def landmarks_from_field(det_id: str) -> Optional[np.ndarray]:
    """The ``Detection2D.id`` string -> landmarks (5x2 float32), or None when it holds none.

    Ids from other detectors (tracking numbers, UUIDs) are not landmarks and give None; a string
    that claims to hold landmarks but is malformed raises DetectionFieldError.
    """
    text = (det_id or "").strip()
    if not text.startswith("{") or LANDMARKS_KEY not in text:
        return None
    try:
        pts = np.asarray(json.loads(text)[LANDMARKS_KEY], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise DetectionFieldError(f"malformed landmarks in detection id {text[:80]!r}: {exc}") \
            from None
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise DetectionFieldError(
            f"detection id landmarks must be 5 finite [x, y] pairs, got shape {pts.shape}")
    return pts


def identity_hypothesis(category, unknown: str = "unknown") -> tuple[str, float]:
    """(class_id, score) of a recognised face: the identity and its similarity, or ``unknown``
    and 0.0 when nobody matched (an unmatched face has no identity similarity to report)."""
    if category is None:
        return unknown, 0.0
    return category.name, float(category.confidence)
