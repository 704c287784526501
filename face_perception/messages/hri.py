"""REP-155 (ROS4HRI) face outputs without ROS: ids, normalised regions and landmarks, face crops,
and which faces appeared, left or changed person between two frames (see docs/hri.md).
"""
from __future__ import annotations

import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Optional, Sequence

import cv2
import numpy as np

from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template

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


# Face ids: "f" + a random token drawn once per FaceIds (i.e. per bridge start) + a counter in
# base 36. The token makes ids of two starts, or of two bridges, differ (36**6 ~ 2.2e9 tokens);
# the counter makes the ids of one start differ; a fixed token length keeps the two parts
# unambiguous.
ID_ALPHABET = string.ascii_lowercase + string.digits
SESSION_LENGTH = 6


def new_session() -> str:
    """A fresh random session token (from the OS's secure generator, not a seeded one)."""
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(SESSION_LENGTH))


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, r = divmod(n, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[r] + digits
        if n == 0:
            return digits


class FaceIds:
    """REP-155 face ids of tracks: each (source, track id), where source is the image's
    frame_id, gets an id that no other track, camera, bridge or restart gets.

    A track keeps its id while it is seen; ``expire`` forgets tracks not seen for a while, so a
    track id that the upstream tracker reuses later gets a new face id."""

    def __init__(self, session: Optional[str] = None):
        session = new_session() if session is None else session
        if len(session) != SESSION_LENGTH or any(c not in ID_ALPHABET for c in session):
            raise ValueError(f"session token must be {SESSION_LENGTH} characters of "
                             f"{ID_ALPHABET!r}, got {session!r}")
        self.session = session
        self._issued = 0
        self._ids: dict[tuple[str, str], str] = {}
        self._seen: dict[tuple[str, str], float] = {}

    def face_id(self, source: str, track_id: str, now: float = 0.0) -> str:
        """The face id of ``track_id`` from ``source`` (seen at time ``now``, seconds)."""
        if not track_id:
            raise ValueError("an empty track id has no REP-155 face id")
        key = (str(source), str(track_id))
        fid = self._ids.get(key)
        if fid is None:
            self._issued += 1
            fid = self._ids[key] = "f" + self.session + _base36(self._issued)
        self._seen[key] = float(now)
        return fid

    def track_of(self, face_id: str) -> Optional[tuple[str, str]]:
        """(source, track id) of a face id in use, None for any other."""
        for key, fid in self._ids.items():
            if fid == face_id:
                return key
        return None

    def expire(self, now: float, timeout: float) -> list[str]:
        """Forget the tracks not seen for more than ``timeout`` seconds; their face ids."""
        old = [k for k, t in self._seen.items() if now - t > timeout]
        for key in old:
            del self._seen[key]
        return [self._ids.pop(key) for key in old]

    def __len__(self) -> int:
        return len(self._ids)


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
    """The faces currently tracked, the source (camera frame_id) and time each was last seen
    in, and the person each one was last matched to."""

    def __init__(self):
        self._source: dict[str, str] = {}  # face id -> source, in the order /tracked lists them
        self._seen: dict[str, float] = {}
        self._person: dict[str, str] = {}

    @property
    def faces(self) -> list[str]:
        return list(self._source)

    def update(self, faces: Sequence[tuple[str, Optional[str], float]], source: str = "",
               now: float = 0.0) -> FrameChanges:
        """One frame of ``source``: its (face id, person id or None, confidence) -> the changes
        to publish. The frame lists every face of its source, so the source's other faces are
        gone; faces of other sources stay.

        A face whose person changed, or that is no longer recognised or tracked, is reported
        as unmatched from its previous person (an IdsMatch with confidence 0)."""
        ids = [f for f, _, _ in faces]
        if len(set(ids)) != len(ids):
            raise ValueError(f"face ids repeat within one frame: {ids}")
        elsewhere = [f for f in ids if self._source.get(f, source) != source]
        if elsewhere:
            raise ValueError(f"face ids {elsewhere} belong to another source than {source!r}")
        changes = FrameChanges(
            appeared=[f for f in ids if f not in self._source],
            gone=[f for f, src in self._source.items() if src == source and f not in ids])
        for face, person, confidence in faces:
            old = self._person.get(face)
            if old is not None and old != person:
                changes.unmatched.append((face, old))
                del self._person[face]
            if person is not None:
                changes.matches.append((face, person, float(confidence)))
                self._person[face] = person
        self._drop(changes.gone, changes)
        for face in [f for f, src in self._source.items() if src == source]:
            del self._source[face]  # re-added below in this frame's order
        for face in ids:
            self._source[face] = source
            self._seen[face] = float(now)
        return changes

    def expire(self, now: float, timeout: float) -> FrameChanges:
        """The faces no frame has shown for more than ``timeout`` seconds: gone (and unmatched
        from their persons), as when their upstream stopped."""
        changes = FrameChanges(gone=[f for f, t in self._seen.items() if now - t > timeout])
        self._drop(changes.gone, changes)
        return changes

    def _drop(self, faces: Sequence[str], changes: FrameChanges) -> None:
        for face in faces:
            self._source.pop(face, None)
            self._seen.pop(face, None)
            old = self._person.pop(face, None)
            if old is not None:
                changes.unmatched.append((face, old))
