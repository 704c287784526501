"""Real camera effects applied to a real photo: the views a video camera would give of that face
(smaller, blurred, moved, JPEG-compressed, slightly rotated), on a 640x480 frame.

``gallery calibrate`` measures strangers' similarities on these views per quality band
(open_set_evidence), and the naming benchmark and tests build their sequences from them.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480


@dataclass(frozen=True)
class CameraEffect:
    """One view: face height in pixels, Gaussian blur sigma, horizontal motion blur length,
    JPEG quality (0: none), in-plane rotation in degrees, mirror."""

    face_h: float = 100.0
    blur: float = 0.0
    motion: int = 0
    jpeg: int = 0
    rotate: float = 0.0
    mirror: bool = False


# The calibration's views of each photo: the sizes a room camera sees (25 px: far away, as in a
# wide stage shot; 45; 90 px close), each sharp, blurred, motion-blurred or compressed.
CALIBRATION_EFFECTS = tuple(
    CameraEffect(face_h=h, blur=b, motion=m, jpeg=j, rotate=r)
    for h in (28.0, 45.0, 90.0)
    for (b, m, j, r) in ((0.0, 0, 0, 0.0), (1.2, 0, 0, 4.0), (0.0, 7, 0, -4.0),
                         (0.0, 0, 30, 0.0)))


def motion_kernel(length: int) -> np.ndarray:
    k = np.zeros((length, length), np.float32)
    k[length // 2, :] = 1.0 / length
    return k


def place_face(photo_bgr: np.ndarray, face_box, effect: CameraEffect, cx: float = FRAME_W / 2,
               cy: float = FRAME_H / 2, canvas=None) -> tuple[np.ndarray, np.ndarray]:
    """The photo scaled so that ``face_box`` is ``effect.face_h`` px high, centred at (cx, cy)
    on a 640x480 frame (grey, or ``canvas``), with the effect's rotation, mirror, blur, motion
    blur and JPEG applied to the frame. Returns (frame, face box in the frame)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(face_box).reshape(4))
    if effect.mirror:
        w = photo_bgr.shape[1]
        photo_bgr, x1, x2 = np.ascontiguousarray(photo_bgr[:, ::-1]), w - x2, w - x1
    k = effect.face_h / max(y2 - y1, 1.0)
    fcx, fcy = (x1 + x2) / 2, (y1 + y2) / 2
    # scale and rotate about the face centre, then move it to (cx, cy): one affine warp
    m = cv2.getRotationMatrix2D((fcx, fcy), effect.rotate, k)
    m[0, 2] += cx - fcx
    m[1, 2] += cy - fcy
    base = np.full((FRAME_H, FRAME_W, 3), 127, np.uint8) if canvas is None else canvas.copy()
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR
    frame = cv2.warpAffine(photo_bgr, m, (FRAME_W, FRAME_H), dst=base, flags=interp,
                           borderMode=cv2.BORDER_TRANSPARENT)
    if effect.blur > 0:
        frame = cv2.GaussianBlur(frame, (0, 0), effect.blur)
    if effect.motion > 1:
        frame = cv2.filter2D(frame, -1, motion_kernel(int(effect.motion)))
    if effect.jpeg:
        ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(effect.jpeg)])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    half_w, half_h = (x2 - x1) * k / 2, (y2 - y1) * k / 2
    return frame, np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h], np.float32)
