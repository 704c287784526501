"""Face quality for enrolment and tracking: size, chip sharpness, pose from the 5 landmarks.

``assess_face`` measures one face and says which limits it breaks; enrolment refuses such photos
with the reason, and the per-track decision can skip such frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import cv2
import numpy as np

# Limits, measured with the shipped dlib_resnet model on the shipped photos (see docs/open_set.md).
# Eye distance: the real photos have 43-120 px; below ~20 px dlib's own 150 px chip is
# upsampled 3x or more and its embedding drifts from the same person's sharp one.
MIN_EYE_DISTANCE = 20.0
# Variance of the Laplacian of the grey chip resized to BLUR_CHIP_SIZE: the sharp photos (shipped,
# astronaut, Grace Hopper) give 145-1230; obama.jpg blurred with a Gaussian of sigma 4 px, or
# 25 px LFW crops upsampled, give under 40.
MIN_SHARPNESS = 60.0
BLUR_CHIP_SIZE = 112
# Yaw proxy: horizontal offset of the nose from the eyes' midpoint in eye distances (0 frontal,
# about 0.5 near profile). The real photos give up to 0.21 (obama2.jpg, slightly turned).
MAX_YAW = 0.35
# Pitch proxy: where the nose sits between the eye line (0) and the mouth line (1). The real
# photos give 0.38-0.73; looking far down or up moves it out of this range.
PITCH_RANGE = (0.25, 0.85)


@dataclass
class FaceQuality:
    """Measurements of one face and the reasons (empty when fine) it is not good enough."""

    eye_distance: float
    sharpness: Optional[float]
    yaw: float
    pitch: float
    roll_degrees: float
    reasons: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons

    def to_dict(self) -> dict:
        return {"ok": self.ok, "reasons": list(self.reasons),
                "eye_distance": round(self.eye_distance, 1),
                "sharpness": None if self.sharpness is None else round(self.sharpness, 1),
                "yaw": round(self.yaw, 3), "pitch": round(self.pitch, 3),
                "roll_degrees": round(self.roll_degrees, 1)}


def sharpness(chip_bgr: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned chip, at a fixed size so that models compare."""
    grey = cv2.cvtColor(np.ascontiguousarray(chip_bgr), cv2.COLOR_BGR2GRAY) \
        if chip_bgr.ndim == 3 else chip_bgr
    grey = cv2.resize(grey, (BLUR_CHIP_SIZE, BLUR_CHIP_SIZE), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose_from_landmarks(landmarks) -> tuple[float, float, float, float]:
    """(eye distance px, yaw proxy, pitch proxy, roll degrees) from the 5 landmarks (left eye,
    right eye, nose, left and right mouth corner), measured in the frame of the eye line."""
    lm = np.asarray(landmarks, np.float64).reshape(5, 2)
    if not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be finite, got {lm.tolist()}")
    eyes_mid = (lm[0] + lm[1]) / 2
    axis = lm[1] - lm[0]
    eye_distance = float(np.hypot(*axis))
    if eye_distance < 1e-6:
        return 0.0, float("inf"), float("nan"), 0.0
    roll = float(np.degrees(np.arctan2(axis[1], axis[0])))
    u = axis / eye_distance            # along the eyes
    v = np.array([-u[1], u[0]])        # down the face
    nose = lm[2] - eyes_mid
    mouth = (lm[3] + lm[4]) / 2 - eyes_mid
    yaw = float(nose @ u / eye_distance)
    mouth_down = float(mouth @ v)
    pitch = float(nose @ v / mouth_down) if mouth_down > 1e-6 else float("nan")
    return eye_distance, yaw, pitch, roll


def assess_face(landmarks, chip_bgr: Optional[np.ndarray] = None, *,
                min_eye_distance: float = MIN_EYE_DISTANCE,
                min_sharpness: float = MIN_SHARPNESS, max_yaw: float = MAX_YAW,
                pitch_range: tuple = PITCH_RANGE) -> FaceQuality:
    """Measure a face from its landmarks in the source image and (for sharpness) its chip."""
    eye_distance, yaw, pitch, roll = pose_from_landmarks(landmarks)
    sharp = None if chip_bgr is None else sharpness(chip_bgr)
    reasons = []
    if eye_distance < min_eye_distance:
        reasons.append(f"face too small (eyes {eye_distance:.0f} px apart, need "
                       f"{min_eye_distance:.0f})")
    if sharp is not None and sharp < min_sharpness:
        reasons.append(f"face blurred (sharpness {sharp:.0f}, need {min_sharpness:.0f})")
    if not abs(yaw) <= max_yaw:
        reasons.append(f"face turned sideways (yaw {yaw:+.2f} eye distances, limit "
                       f"{max_yaw:.2f})")
    if not pitch_range[0] <= pitch <= pitch_range[1]:
        reasons.append(f"face tilted up or down (nose at {pitch:.2f} between eyes and mouth, "
                       f"expected {pitch_range[0]:.2f}-{pitch_range[1]:.2f})")
    return FaceQuality(eye_distance, sharp, yaw, pitch, roll, reasons)


# -- a continuous score, for weighting views of one face (tracking) ------------------------------
# A face box this many pixels on its short side (or more) loses nothing to the embedder (dlib's
# chip is 150 px wide, the face about 100 px of it); smaller faces are upsampled and lose detail.
FULL_SIZE = 80.0
# Yaw proxy (see pose_from_landmarks) at which a face counts as in profile (pose score 0).
PROFILE_YAW = 0.5
# Sharpness (variance of the Laplacian at BLUR_CHIP_SIZE) from which a face crop counts as fully
# sharp. The shipped photos' face crops give 325-862; blurred by a Gaussian of sigma 3 px (of a
# 64 px face), 4-9.
SHARP_FULL = 350.0
# Pose score when there are no landmarks to judge it (a foreign detector's bare box).
UNKNOWN_POSE = 0.5


def pose_score(landmarks) -> float:
    """1 for a frontal face, falling linearly to 0 at profile (yaw proxy PROFILE_YAW)."""
    if landmarks is None:
        return UNKNOWN_POSE
    try:
        eye_distance, yaw, _pitch, _roll = pose_from_landmarks(landmarks)
    except ValueError:
        return 0.0
    if eye_distance < 1e-6:
        return 0.0
    return float(np.clip(1.0 - abs(yaw) / PROFILE_YAW, 0.0, 1.0))


def quality_score(image_bgr: np.ndarray, face) -> float:
    """size x pose x sharpness of one detected face, each in [0, 1] (1: large, frontal, sharp)."""
    size = float(np.clip(min(face.width, face.height) / FULL_SIZE, 0.0, 1.0))
    h, w = image_bgr.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in face.box)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    sharp = float(np.clip(sharpness(image_bgr[y1:y2, x1:x2]) / SHARP_FULL, 0.0, 1.0))
    return size * pose_score(face.landmarks) * sharp
