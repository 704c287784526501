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


def encode_landmarks(landmarks: Optional[np.ndarray]) -> str:
    """Landmarks (5x2) -> the ``Detection2D.id`` string ('' when there are none)."""
    if landmarks is None:
        return ""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return json.dumps({LANDMARKS_KEY: [[round(float(x), 1), round(float(y), 1)] for x, y in pts]},
                      separators=(",", ":"))


def decode_landmarks(det_id: str) -> Optional[np.ndarray]:
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


# Where the track id and the landmarks of a received Detection2D are read for the REP-155 bridge.
# Today Detection2D.id holds either landmark JSON (our detector) or another sender's track id;
# the track-id contract (issue 13) moves the landmarks to ``results[1..5]`` entries with class id
# ``landmark/<point>`` and the pixel position in ``pose.pose.position``. Both are read here, in
# ONE place, so the bridge follows whatever the detector's contract becomes.
_CARRIER_LANDMARKS = tuple("landmark/" + point for point in
                           ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"))


def track_id_and_landmarks(det) -> tuple[Optional[str], Optional[np.ndarray]]:
    """A (duck-typed) vision_msgs/Detection2D -> (track id or None, landmarks 5x2 or None).

    The id is a track id unless it is empty or our landmark JSON; landmarks come from that JSON
    or from ``landmark/<point>`` results (all five or DetectionFieldError).
    """
    landmarks = decode_landmarks(det.id)
    track_id = None if landmarks is not None or not (det.id or "").strip() else det.id
    found = {}
    for result in det.results:
        class_id = result.hypothesis.class_id
        if class_id in _CARRIER_LANDMARKS:
            found[class_id] = (result.pose.pose.position.x, result.pose.pose.position.y)
    if found and landmarks is None:
        if len(found) != len(_CARRIER_LANDMARKS):
            missing = sorted(set(_CARRIER_LANDMARKS) - set(found))
            raise DetectionFieldError(f"detection landmarks incomplete: missing {missing}")
        landmarks = np.array([found[c] for c in _CARRIER_LANDMARKS], dtype=np.float32)
        if not np.isfinite(landmarks).all():
            raise DetectionFieldError(f"detection landmarks must be finite: {landmarks.tolist()}")
    return track_id, landmarks
