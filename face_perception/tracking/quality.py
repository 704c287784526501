"""How useful a face image is for recognition, in [0, 1]: size x frontal pose x sharpness.

Used to weight a track's evidence and to decide when a better view is worth embedding again.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from face_perception.types import Face

# A face box this many pixels on its short side (or more) loses nothing to the embedder (dlib's
# chip is 150 px wide, the face about 100 px of it); smaller faces are upsampled and lose detail.
FULL_SIZE = 80.0
# Nose offset from the eyes' midpoint along the eye line, as a fraction of the eye distance, at
# which a face counts as in profile (quality 0): frontal faces sit near 0; about 0.5 is where
# the far eye disappears.
PROFILE_OFFSET = 0.5
# Variance of the Laplacian of the face resized to SHARP_SIDE px, from which a face counts as
# sharp. Measured on the shipped photos: 1400-3500 for the sharp faces, under 50 after a Gaussian
# blur of sigma 3 (px of the resized face).
SHARP_SIDE = 64
SHARP_VARIANCE = 800.0
# Pose score when there are no landmarks to judge it (a foreign detector's bare box).
UNKNOWN_POSE = 0.5


def size_score(face: Face) -> float:
    return float(np.clip(min(face.width, face.height) / FULL_SIZE, 0.0, 1.0))


def pose_score(landmarks: Optional[np.ndarray]) -> float:
    """1 for a frontal face, falling to 0 at profile, from the nose's place between the eyes."""
    if landmarks is None:
        return UNKNOWN_POSE
    pts = np.asarray(landmarks, np.float64).reshape(5, 2)
    left, right, nose = pts[0], pts[1], pts[2]
    axis = right - left
    dist = float(np.hypot(*axis))
    if dist < 1e-6 or not np.isfinite(pts).all():
        return 0.0
    offset = abs(float((nose - (left + right) / 2) @ axis)) / dist ** 2
    return float(np.clip(1.0 - offset / PROFILE_OFFSET, 0.0, 1.0))


def sharpness_score(image_bgr: np.ndarray, face: Face) -> float:
    """Variance of the Laplacian of the face crop at a fixed size, scaled to [0, 1]."""
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    crop = cv2.cvtColor(image_bgr[y1:y2, x1:x2], cv2.COLOR_BGR2GRAY)
    crop = cv2.resize(crop, (SHARP_SIDE, SHARP_SIDE), interpolation=cv2.INTER_AREA)
    var = float(cv2.Laplacian(crop, cv2.CV_64F).var())
    return float(np.clip(var / SHARP_VARIANCE, 0.0, 1.0))


def face_quality(image_bgr: np.ndarray, face: Face) -> float:
    """size x pose x sharpness, each in [0, 1] (0: useless view, 1: large, frontal, sharp)."""
    return size_score(face) * pose_score(face.landmarks) * sharpness_score(image_bgr, face)
