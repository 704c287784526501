"""Synthetic video scenes for the tracking tests and benchmark, made from the shipped real photos.

Each scene is a list of ``Frame``s (640x480 BGR image, stamp in ns, and where each person's face
was put): real faces cropped from the photos and moved, scaled, hidden or cut between.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from face_perception.imageio import read_image_bgr

W, H = 640, 480
RATE = 30.0
PEOPLE = {"obama": "obama.jpg", "biden": "biden.jpg", "obama2": "obama2.jpg",
          "obama3": "obama3.jpg"}


@dataclass
class Frame:
    image: np.ndarray
    stamp_ns: int
    truth: dict = field(default_factory=dict)  # person -> face box placed in this frame


class Cutouts:
    """Head-and-shoulders crops of the photos, with the face box inside each crop."""

    def __init__(self, photos: Path, detector):
        self.crops = {}
        for person, name in PEOPLE.items():
            img = read_image_bgr(photos / name)
            face = detector.detect(img)[0]
            x1, y1, x2, y2 = face.box
            fw, fh = x2 - x1, y2 - y1
            cx1, cy1 = int(max(0, x1 - 0.5 * fw)), int(max(0, y1 - 0.5 * fh))
            cx2, cy2 = int(min(img.shape[1], x2 + 0.5 * fw)), int(min(img.shape[0], y2 + 0.5 * fh))
            self.crops[person] = (img[cy1:cy2, cx1:cx2],
                                  np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1]))

    def paste(self, canvas, person: str, cx: float, cy: float, face_h: float):
        """Put ``person`` with the face centred at (cx, cy), face ``face_h`` px high; returns
        the face box on the canvas (clipped), or None when the face is off the canvas."""
        crop, fbox = self.crops[person]
        k = face_h / (fbox[3] - fbox[1])
        img = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        fb = fbox * k
        ox = int(round(cx - (fb[0] + fb[2]) / 2))
        oy = int(round(cy - (fb[1] + fb[3]) / 2))
        h, w = img.shape[:2]
        x1, y1, x2, y2 = max(ox, 0), max(oy, 0), min(ox + w, W), min(oy + h, H)
        if x2 <= x1 or y2 <= y1:
            return None
        canvas[y1:y2, x1:x2] = img[y1 - oy:y2 - oy, x1 - ox:x2 - ox]
        box = fb + [ox, oy, ox, oy]
        clipped = np.clip(box, [0, 0, 0, 0], [W, H, W, H])
        if (clipped[2] - clipped[0]) < 0.5 * (box[2] - box[0]):
            return None  # less than half the face is in view
        return clipped


def background(kind: str) -> np.ndarray:
    """A smooth gradient: 'a' cool grey-blue, 'b' warm brown (different scenes for cuts)."""
    y = np.linspace(0, 1, H)[:, None, None]
    x = np.linspace(0, 1, W)[None, :, None]
    if kind == "a":
        base, grad = np.array([150, 130, 110]), np.array([60, 30, 10])
    else:
        base, grad = np.array([40, 90, 150]), np.array([20, 50, 80])
    img = base + grad * (0.6 * y + 0.4 * x)
    return np.clip(img, 0, 255).astype(np.uint8)


def stamp(i: float) -> int:
    return int(round(1_000_000_000 + i * 1e9 / RATE))


def scene(cut: Cutouts, n: int, placements, bg="a", start: int = 0, skip=(), occlude=None,
          blur=None):
    """Frames ``start .. start+n-1``; placements(i) -> [(person, cx, cy, face_h)]; frames in
    ``skip`` are dropped (their stamps are missing); occlude(i) -> list of grey rectangles;
    blur(i) -> Gaussian sigma for the whole frame (0 for none)."""
    frames = []
    for i in range(start, start + n):
        if i in skip:
            continue
        canvas = background(bg).copy()
        truth = {}
        for person, cx, cy, fh in placements(i):
            box = cut.paste(canvas, person, cx, cy, fh)
            if box is not None:
                truth[person] = box
        for (x1, y1, x2, y2) in (occlude(i) if occlude else []):
            canvas[int(y1):int(y2), int(x1):int(x2)] = (128, 128, 128)
        sigma = blur(i) if blur else 0
        if sigma:
            canvas = cv2.GaussianBlur(canvas, (0, 0), sigma)
        frames.append(Frame(canvas, stamp(i), truth))
    return frames


def truth_ids(frames, outputs, min_iou: float = 0.3) -> dict:
    """person -> list of (frame index, track id or None) from each frame's TrackedFace list or
    track list, matching each placed face to the output face overlapping it most."""
    from face_perception.tracking.association import assign, iou_matrix

    seen: dict = {}
    for n, (frame, out) in enumerate(zip(frames, outputs)):
        people = list(frame.truth)
        # One output face per placed face (an occluded face must not take its occluder's).
        iou = iou_matrix([frame.truth[p] for p in people], [o.face.box for o in out])
        pairs, _, _ = assign(1.0 - iou, 1.0 - min_iou)
        got = {people[i]: out[j] for i, j in pairs}
        for person in people:
            seen.setdefault(person, []).append((n, got.get(person)))
    return seen


def name_counts(frames, outputs, truth_name=lambda person: person) -> dict:
    """{"named": frames x faces given a name, "wrong": of those, names that are not the person's
    (truth_name(person) None: a stranger, any name is wrong)}."""
    named = wrong = 0
    for person, hits in truth_ids(frames, outputs).items():
        for _, tf in hits:
            if tf is not None and tf.category is not None:
                named += 1
                wrong += tf.category.name != truth_name(person)
    return {"named": named, "wrong": wrong}
