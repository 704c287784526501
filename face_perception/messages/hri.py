"""REP-155 (ROS4HRI) face outputs without ROS: ids, normalised regions and landmarks, face crops,
and which faces appeared, left or changed person between two frames (see docs/hri.md).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from face_perception.recognition.alignment import ARCFACE_TEMPLATE_112, align_to_template

# REP-155 "Common Parameters": /humans/faces/width and /humans/faces/height.
FACE_WIDTH = 128
FACE_HEIGHT = 128

# hri_msgs/FacialLandmarks holds 70 points indexed by dlib/OpenPose codes, named from the
# person's point of view: the eye on the image left is the person's RIGHT eye. Our 5 points
# (image left eye, image right eye, nose tip, image left / right mouth corner) go to
# RIGHT_PUPIL, LEFT_PUPIL, NOSE, MOUTH_OUTER_RIGHT, MOUTH_OUTER_LEFT; the other 65 are absent.
N_LANDMARKS = 70
LANDMARK_CODES = (68, 69, 30, 48, 54)

_TOKEN_SAFE = re.compile(r"[A-Za-z0-9]")


def id_token(text: str) -> str:
    """``text`` as a ROS name token: letters and digits kept, every other character (``_``
    included) written ``_xx`` in hex (UTF-8 bytes), so distinct texts give distinct tokens."""
    if not text:
        raise ValueError("an empty string has no REP-155 id")
    return "".join(c if _TOKEN_SAFE.fullmatch(c) else "".join(f"_{b:02x}" for b in
                                                              c.encode("utf-8"))
                   for c in text)


def face_id(track_id: str) -> str:
    """REP-155 face id of a track: ``f`` + the track id as a token (``"7"`` -> ``"f7"``)."""
    return "f" + id_token(str(track_id))


def person_id(name: str) -> str:
    """REP-155 person id of a gallery identity: ``p`` + the name as a token, so it is the same
    on every run for as long as the gallery keeps the name (``"ada lovelace"`` ->
    ``"pada_20lovelace"``)."""
    return "p" + id_token(name)


def _image_size(width: int, height: int) -> tuple[int, int]:
    if int(width) <= 0 or int(height) <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    return int(width), int(height)


def normalized_roi(box, width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel box (x1, y1, x2, y2) -> (xmin, ymin, xmax, ymax) in [0, 1] of a width x height
    image (the part of the box inside the image)."""
    w, h = _image_size(width, height)
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    clip = lambda v: min(max(v, 0.0), 1.0)  # noqa: E731 - a one-line local helper
    return clip(x1 / w), clip(y1 / h), clip(x2 / w), clip(y2 / h)


def facial_landmarks(landmarks, width: int, height: int) -> np.ndarray:
    """Our 5 pixel landmarks -> the (70, 3) (x, y, c) array of hri_msgs/FacialLandmarks:
    normalised positions with c = 1 at LANDMARK_CODES, (0, 0, 0) for every absent point."""
    w, h = _image_size(width, height)
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    out = np.zeros((N_LANDMARKS, 3), dtype=np.float32)
    out[list(LANDMARK_CODES), 0] = np.clip(pts[:, 0] / w, 0.0, 1.0)
    out[list(LANDMARK_CODES), 1] = np.clip(pts[:, 1] / h, 0.0, 1.0)
    out[list(LANDMARK_CODES), 2] = 1.0
    return out


def cropped_face(image_bgr: np.ndarray, box, width: int = FACE_WIDTH,
                 height: int = FACE_HEIGHT) -> np.ndarray:
    """REP-155 ``/cropped``: the box's pixels, scaled to fit width x height with the aspect kept,
    centred and zero-padded."""
    w, h = _image_size(width, height)
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float64).reshape(4)
    ih, iw = image_bgr.shape[:2]
    x1, y1 = int(max(np.floor(x1), 0)), int(max(np.floor(y1), 0))
    x2, y2 = int(min(np.ceil(x2), iw)), int(min(np.ceil(y2), ih))
    out = np.zeros((h, w, 3), dtype=np.uint8)
    if x2 <= x1 or y2 <= y1:
        return out  # the box is outside the image: nothing to show
    crop = image_bgr[y1:y2, x1:x2]
    k = min(w / crop.shape[1], h / crop.shape[0])
    cw, ch = max(1, round(crop.shape[1] * k)), max(1, round(crop.shape[0] * k))
    scaled = cv2.resize(crop, (cw, ch),
                        interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
    ox, oy = (w - cw) // 2, (h - ch) // 2
    out[oy:oy + ch, ox:ox + cw] = scaled
    return out


def aligned_face(image_bgr: np.ndarray, landmarks, width: int = FACE_WIDTH,
                 height: int = FACE_HEIGHT) -> np.ndarray:
    """REP-155 ``/aligned``: the face warped so that the eyes are level, with the ArcFace
    template's geometry scaled to width x height (the size of ``/cropped``)."""
    w, h = _image_size(width, height)
    template = ARCFACE_TEMPLATE_112 * np.array([w / 112.0, h / 112.0], dtype=np.float32)
    return align_to_template(image_bgr, landmarks, template, (w, h))


# IdsMatch confidence 0.0 means "not associated": a named face reports at least this much.
MIN_MATCH_CONFIDENCE = 0.01


def match_confidence(similarity: float) -> float:
    """IdsMatch confidence of a face the recognizer named: its similarity score clipped to
    [MIN_MATCH_CONFIDENCE, 1] (it named the face, so the match is never 'not associated')."""
    return float(min(max(float(similarity), MIN_MATCH_CONFIDENCE), 1.0))


@dataclass
class FrameChanges:
    """What one frame changes for REP-155 consumers."""

    appeared: list = field(default_factory=list)   # face ids new in this frame
    gone: list = field(default_factory=list)       # face ids no longer tracked
    matches: list = field(default_factory=list)    # (face id, person id, confidence)
    unmatched: list = field(default_factory=list)  # (face id, person id) no longer associated


class TrackedFaces:
    """The faces currently tracked and the person each one was last matched to."""

    def __init__(self):
        self.faces: list[str] = []
        self._person: dict[str, str] = {}

    def update(self, faces: Sequence[tuple[str, Optional[str], float]]) -> FrameChanges:
        """This frame's (face id, person id or None, confidence) -> the changes to publish.

        A face whose person changed, or that is no longer recognised or tracked, is reported
        as unmatched from its previous person (an IdsMatch with confidence 0)."""
        ids = [f for f, _, _ in faces]
        if len(set(ids)) != len(ids):
            raise ValueError(f"face ids repeat within one frame: {ids}")
        changes = FrameChanges(appeared=[f for f in ids if f not in self.faces],
                               gone=[f for f in self.faces if f not in ids])
        for face, person, confidence in faces:
            old = self._person.get(face)
            if old is not None and old != person:
                changes.unmatched.append((face, old))
                del self._person[face]
            if person is not None:
                changes.matches.append((face, person, float(confidence)))
                self._person[face] = person
        for face in changes.gone:
            old = self._person.pop(face, None)
            if old is not None:
                changes.unmatched.append((face, old))
        self.faces = ids
        return changes
