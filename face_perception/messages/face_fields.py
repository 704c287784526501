"""Where a Face goes in a vision_msgs/Detection2D, without ROS (shared by nodes and bag tools).

Standard fields carry the standard meaning: ``bbox.center`` is the box centre in image pixels,
``bbox.size_x/size_y`` its width/height, ``results[0].hypothesis`` the class ("face" or an
identity) and score, ``Detection2D.id`` the track id ('' when untracked). The 5 landmarks follow
as ``results[1..5]``: class_id ``landmark/<point>``, score -1.0 (below any face or identity
score), pixel position in ``pose.pose.position`` (x, y); see docs/topics.md.
"""
from __future__ import annotations

import json
from typing import Iterable, Optional

import numpy as np

LANDMARK_PREFIX = "landmark/"
# Image left/right, as RetinaFace and the ArcFace alignment template order them.
LANDMARK_CLASS_IDS = tuple(LANDMARK_PREFIX + point for point in
                           ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right"))
# Below every results[0] score (detector [0, 1], identity similarity, unknown 0.0): a consumer
# taking the best-scoring hypothesis, or keeping scores >= any threshold >= 0, never gets a
# landmark instead of the face.
LANDMARK_SCORE = -1.0
LEGACY_LANDMARKS_KEY = "landmarks"


class DetectionFieldError(ValueError):
    """A Detection2D whose fields cannot describe a face (negative size, bad landmarks)."""


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


def landmark_hypotheses(landmarks: Optional[np.ndarray]) -> list[tuple[str, float, float]]:
    """Landmarks (5x2) -> the (class_id, x, y) of ``results[1..5]`` (none without landmarks)."""
    if landmarks is None:
        return []
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    return [(cid, float(x), float(y)) for cid, (x, y) in zip(LANDMARK_CLASS_IDS, pts)]


def landmarks_from_hypotheses(hypotheses: Iterable[tuple[str, float, float]],
                              ) -> Optional[np.ndarray]:
    """(class_id, x, y) of a detection's results -> landmarks (5x2 float32), or None when no
    result is one of ours. Other class ids are ignored; all five points or none, else
    DetectionFieldError."""
    found: dict[str, tuple[float, float]] = {}
    for class_id, x, y in hypotheses:
        if class_id not in LANDMARK_CLASS_IDS:
            continue
        if class_id in found:
            raise DetectionFieldError(f"detection has {class_id!r} twice")
        found[class_id] = (x, y)
    if not found:
        return None
    missing = [c for c in LANDMARK_CLASS_IDS if c not in found]
    if missing:
        raise DetectionFieldError(f"detection landmarks incomplete: missing {missing}")
    pts = np.array([found[c] for c in LANDMARK_CLASS_IDS], dtype=np.float32)
    if not np.isfinite(pts).all():
        raise DetectionFieldError(f"detection landmarks must be finite, got {pts.tolist()}")
    return pts


def track_id_to_field(track_id) -> str:
    """A track id (None: untracked) -> the ``Detection2D.id`` string."""
    return "" if track_id is None else str(track_id)


def track_id_from_field(det_id: str) -> Optional[str]:
    """``Detection2D.id`` -> the sender's track id as sent, or None (empty, or an old-style
    landmark JSON id, which is no track id)."""
    if not (det_id or "").strip() or _is_legacy_landmarks(det_id):
        return None
    return det_id


def _is_legacy_landmarks(det_id: str) -> bool:
    text = (det_id or "").strip()
    return text.startswith("{") and LEGACY_LANDMARKS_KEY in text


def landmarks_from_legacy_id(det_id: str) -> Optional[np.ndarray]:
    """Old-style ``Detection2D.id`` (``{"landmarks":[[x,y],...]}``, before track ids took the
    field) -> landmarks (5x2 float32), or None when it holds none. Read for one release so that
    older bags and nodes keep their landmarks; nothing writes it any more.

    A string that claims to hold landmarks but is malformed raises DetectionFieldError.
    """
    if not _is_legacy_landmarks(det_id):
        return None
    text = det_id.strip()
    try:
        pts = np.asarray(json.loads(text)[LEGACY_LANDMARKS_KEY], dtype=np.float32)
    except (ValueError, KeyError, TypeError) as exc:
        raise DetectionFieldError(f"malformed landmarks in detection id {text[:80]!r}: {exc}") \
            from None
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise DetectionFieldError(
            f"detection id landmarks must be 5 finite [x, y] pairs, got shape {pts.shape}")
    return pts


def track_id_and_landmarks(det) -> tuple[Optional[str], Optional[np.ndarray]]:
    """A (duck-typed) received vision_msgs/Detection2D -> (track id or None, landmarks or None).

    The one reader of both fields for consumers of our messages (the REP-155 bridge): landmarks
    from the ``landmark/<point>`` results, else an old-style JSON id.
    """
    landmarks = landmarks_from_hypotheses(
        (r.hypothesis.class_id, r.pose.pose.position.x, r.pose.pose.position.y)
        for r in det.results)
    if landmarks is None:
        landmarks = landmarks_from_legacy_id(det.id)
    return track_id_from_field(det.id), landmarks


def identity_hypothesis(category, unknown: str = "unknown") -> tuple[str, float]:
    """(class_id, score) of a recognised face: the identity and its similarity, or ``unknown``
    and 0.0 when nobody matched (an unmatched face has no identity similarity to report)."""
    if category is None:
        return unknown, 0.0
    return category.name, float(category.confidence)
