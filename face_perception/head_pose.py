"""Head pose from the 5 face landmarks and the camera intrinsics (PnP against a generic face).

The pose is the REP-155 ``face_<id>`` frame in the camera's optical frame (x right, y down, z
forward): origin between the eyes, x out of the face, y to the person's left, z toward the scalp;
``gaze_<id>`` is collocated with z along the face's x, x to the person's right, y down. The model
and its sources are in docs/hri.md#head-pose.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import cv2
import numpy as np

# The 5 points in the face frame, metres, in our landmark order (image-left eye = the person's
# right eye, image-right eye, nose tip, image-left mouth corner, image-right mouth corner).
# Layout across the face: the ArcFace 5-point template (the alignment template, an average of
# frontal faces) scaled to a 63 mm distance between the eyes (adult mean interpupillary
# distance). Depths are generic approximations: nose tip 20 mm in front of the eyes' plane,
# mouth corners 5 mm behind it.
INTERPUPILLARY_M = 0.063
FACE_MODEL_M = np.array([
    [0.0, -0.0315, 0.0],      # person's right eye
    [0.0, 0.0315, 0.0],       # person's left eye
    [0.020, 0.0, -0.036],     # nose tip
    [-0.005, -0.026, -0.073],  # person's right mouth corner
    [-0.005, 0.026, -0.073],   # person's left mouth corner
])

# A face looking straight into the camera: its x (out of the face) is the camera's -z, its y
# (the person's left = image right) the camera's x, its z (up) the camera's -y.
FRONTAL = np.array([[0.0, 1.0, 0.0],
                    [0.0, 0.0, -1.0],
                    [-1.0, 0.0, 0.0]])
# gaze_<id> axes in the face frame (columns): x = -y_face, y = -z_face, z = x_face.
GAZE_IN_FACE = np.array([[0.0, 0.0, 1.0],
                         [-1.0, 0.0, 0.0],
                         [0.0, -1.0, 0.0]])

# CameraInfo distortion models whose coefficients OpenCV's pinhole model takes as they are.
PINHOLE_DISTORTIONS = ("", "plumb_bob", "rational_polynomial")


class HeadPoseError(ValueError):
    """Intrinsics or landmarks from which no head pose can be solved."""


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera: 3x3 matrix K and distortion coefficients (empty: none)."""

    matrix: np.ndarray
    distortion: np.ndarray

    @classmethod
    def from_camera_info(cls, k: Sequence[float], d: Sequence[float],
                         distortion_model: str = "plumb_bob") -> Intrinsics:
        """From sensor_msgs/CameraInfo fields ``k`` (row-major 3x3), ``d`` and
        ``distortion_model``; raises HeadPoseError for what the pinhole model cannot use."""
        matrix = np.asarray(k, dtype=np.float64)
        if matrix.size != 9 or not np.isfinite(matrix).all():
            raise HeadPoseError(f"camera matrix k must be 9 finite numbers, got {list(k)}")
        matrix = matrix.reshape(3, 3)
        if matrix[0, 0] <= 0 or matrix[1, 1] <= 0 or matrix[2, 2] != 1.0:
            raise HeadPoseError(f"camera matrix k is not a calibrated pinhole camera: "
                                f"{matrix.ravel().tolist()} (an uncalibrated camera sends zeros)")
        distortion = np.asarray(d, dtype=np.float64).ravel()
        if distortion.size and distortion_model not in PINHOLE_DISTORTIONS:
            raise HeadPoseError(f"distortion model {distortion_model!r} is not supported "
                                f"(use one of {[m for m in PINHOLE_DISTORTIONS if m]} or a "
                                "rectified image with its projection matrix)")
        if distortion.size not in (0, 4, 5, 8, 12, 14):
            raise HeadPoseError(f"{distortion.size} distortion coefficients: OpenCV takes 4, 5, 8, "
                                "12 or 14")
        return cls(matrix, distortion)


@dataclass(frozen=True)
class HeadPose:
    """``rotation`` (3x3, columns = face axes) and ``translation`` (metres) of the face frame
    in the camera's optical frame."""

    rotation: np.ndarray
    translation: np.ndarray

    @property
    def gaze_rotation(self) -> np.ndarray:
        """The gaze frame's axes in the camera frame (gaze = head orientation here)."""
        return self.rotation @ GAZE_IN_FACE


def solve_head_pose(landmarks, intrinsics: Intrinsics) -> HeadPose:
    """The head pose of a face from its 5 pixel landmarks (our order, see FACE_MODEL_M).

    Iterative PnP started from a frontal face at the distance the eye spacing gives, so that
    the nearly planar 5-point model converges to the face-forward solution, not its mirror.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(-1, 2)
    if pts.shape != (5, 2) or not np.isfinite(pts).all():
        raise HeadPoseError(f"need 5 finite landmarks, got {pts.tolist()}")
    undistorted = cv2.undistortPoints(pts.reshape(-1, 1, 2), intrinsics.matrix,
                                      intrinsics.distortion if intrinsics.distortion.size
                                      else None).reshape(-1, 2)
    eyes = undistorted[1] - undistorted[0]  # in normalised image units
    eye_gap = float(np.linalg.norm(eyes))
    if eye_gap <= 1e-9:
        raise HeadPoseError(f"the eyes coincide: {pts[:2].tolist()}")
    depth = INTERPUPILLARY_M / eye_gap
    mid = (undistorted[0] + undistorted[1]) / 2
    # Start rolled like the eye line: a tilted head then converges like an upright one.
    c, s = eyes / eye_gap
    roll = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    rvec0, _ = cv2.Rodrigues(roll @ FRONTAL)
    tvec0 = np.array([[mid[0] * depth], [mid[1] * depth], [depth]])
    ok, rvec, tvec = cv2.solvePnP(FACE_MODEL_M, pts, intrinsics.matrix,
                                  intrinsics.distortion if intrinsics.distortion.size else None,
                                  rvec=rvec0.copy(), tvec=tvec0.copy(), useExtrinsicGuess=True,
                                  flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.isfinite(tvec).all() or float(tvec[2, 0]) <= 0:
        raise HeadPoseError(f"no head pose in front of the camera for landmarks {pts.tolist()}")
    rotation, _ = cv2.Rodrigues(rvec)
    return HeadPose(rotation, tvec.reshape(3))


def quaternion_xyzw(rotation) -> tuple[float, float, float, float]:
    """Unit quaternion (x, y, z, w) of a 3x3 rotation matrix, w >= 0 (geometry_msgs order)."""
    m = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    # Largest of w, x, y, z first: dividing by it keeps the other three accurate.
    if trace > 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = ((m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = (s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s)
    q = np.array(q) / np.linalg.norm(q)
    if q[3] < 0:
        q = -q
    return tuple(float(v) for v in q)


def rotation_from_quaternion(x: float, y: float, z: float, w: float) -> np.ndarray:
    """3x3 rotation matrix of a unit quaternion (x, y, z, w)."""
    q = np.array([x, y, z, w], dtype=np.float64)
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"not a rotation quaternion: {q.tolist()}")
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def frontal_angle_deg(pose: HeadPose, toward: Optional[np.ndarray] = None) -> float:
    """Angle between the face's forward axis and the direction from the face to ``toward``
    (default: the camera); 0 = looking straight at it."""
    target = np.zeros(3) if toward is None else np.asarray(toward, dtype=np.float64)
    to_target = target - pose.translation
    cos = float(pose.rotation[:, 0] @ to_target / np.linalg.norm(to_target))
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
