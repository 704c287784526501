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


# -- naming sequences: real photos with real camera effects (docs/tracking.md#naming) ----------
# Who appears: each person is one real photo; obama2/obama3 are other photos of the person the
# gallery enrols from obama.jpg. A gallery enrols one photo per person (NAMING_GALLERIES).
NAMING_PHOTOS = {"obama": "obama.jpg", "obama2": "obama2.jpg", "obama3": "obama3.jpg",
                 "biden": "biden.jpg", "astronaut": "astronaut", "hopper": "hopper"}
IDENTITY_OF = {"obama": "obama", "obama2": "obama", "obama3": "obama", "biden": "biden",
               "astronaut": "astronaut", "hopper": "hopper"}
# Two galleries with the roles swapped: the people of one are the strangers of the other.
NAMING_GALLERIES = {"obama+hopper": ("obama", "hopper"), "biden+astronaut": ("biden",
                                                                             "astronaut")}


class NamingPhotos:
    """The photos of NAMING_PHOTOS (BGR) with their face boxes, found by ``detector``."""

    def __init__(self, photos: Path, detector):
        from test.open_set_photos import extra_photos

        extra = extra_photos()
        self.images, self.boxes = {}, {}
        for person, name in NAMING_PHOTOS.items():
            path = extra.get(name) or photos / name
            img = read_image_bgr(path)
            faces = detector.detect(img)
            face = max(faces, key=lambda f: f.width * f.height)
            self.images[person], self.boxes[person] = img, face.box


def naming_segments(short: bool = False) -> list:
    """The naming sequence as segments [(name, frames, background, actors)], each actor
    (person, x0, y0, dx, dy, face_h, effect(i) -> CameraEffect fields). ``short``: 1/3 of the
    frames of every segment (tests)."""
    def fx(**kw):
        return lambda i: kw

    def wobble(base: dict, every: int, **alt):
        return lambda i: {**base, **(alt if i % every == every - 1 else {})}

    k = 3 if short else 1
    return [
        # A wide shot: two small faces (~26 px) walking across, JPEG-compressed stream.
        ("wide", 60 // k, "a", [
            ("obama2", 120, 200, 3.0, 0.3, 26, fx(jpeg=45)),
            ("biden", 520, 230, -3.0, 0.0, 27, fx(jpeg=45)),
        ]),
        # A close-up of one person moving, with motion blur every 4th frame and a slow turn.
        ("close-up", 45 // k, "b", [
            ("obama3", 300, 230, 1.0, 0.2, 120,
             lambda i: {"motion": 9 if i % 4 == 3 else 0, "rotate": -6 + 0.3 * i, "jpeg": 70}),
        ]),
        # An audience: four medium faces, two enrolled, two strangers, blurred and compressed.
        ("audience", 60 // k, "a", [
            ("hopper", 100, 170, 0.3, 0.0, 40, wobble({"blur": 0.8, "jpeg": 40}, 5, blur=2.0)),
            ("astronaut", 260, 300, -0.2, 0.1, 38, wobble({"blur": 0.8, "jpeg": 40}, 7,
                                                           blur=2.0)),
            ("obama", 420, 170, 0.2, 0.0, 36, wobble({"blur": 0.8, "jpeg": 40}, 6,
                                                      motion=7)),
            ("biden", 560, 320, -0.3, 0.0, 42, wobble({"blur": 0.8, "jpeg": 40}, 4,
                                                       rotate=8)),
        ]),
        # Turned faces: mirrored and rotated views of two people at 70 px.
        ("turned", 45 // k, "b", [
            ("obama2", 200, 240, 0.5, 0.0, 70, lambda i: {"mirror": True,
                                                          "rotate": 12 * np.sin(i / 6)}),
            ("astronaut", 460, 240, -0.5, 0.0, 70, lambda i: {"rotate": -10 * np.sin(i / 5),
                                                              "jpeg": 50}),
        ]),
    ]


def naming_sequence(photos: NamingPhotos, short: bool = False) -> list:
    """Frames of the naming sequence (``naming_segments``): each frame's ``truth`` maps the
    person (a NAMING_PHOTOS key) to the face box placed. Segments are separated by a scene cut
    (another background); stamps run on at 30 Hz."""
    from face_perception.recognition.open_set_views import CameraEffect, place_face

    frames, n = [], 0
    for _name, length, bg, actors in naming_segments(short):
        for i in range(length):
            canvas = background(bg)
            truth = {}
            for person, x0, y0, dx, dy, face_h, effect in actors:
                eff = CameraEffect(face_h=face_h, **effect(i))
                # Each face on the canvas in turn; the frame-wide effects (blur, JPEG) of the
                # last face apply to the whole frame only once: per face, on its own layer.
                layer, box = place_face(photos.images[person], photos.boxes[person], eff,
                                        x0 + dx * i, y0 + dy * i, canvas=canvas)
                mask = np.zeros(canvas.shape[:2], np.uint8)
                pad = 0.9 * face_h
                cv2.rectangle(mask, (int(box[0] - pad), int(box[1] - pad)),
                              (int(box[2] + pad), int(box[3] + pad)), 255, -1)
                canvas = np.where(mask[..., None] > 0, layer, canvas)
                truth[person] = box
            frames.append(Frame(np.ascontiguousarray(canvas), stamp(n), truth))
            n += 1
    return frames


def naming_outcome(frames, outputs, enrolled) -> dict:
    """Face-frames named right / wrong / left unknown, for enrolled people and strangers apart,
    and the stranger tracks given any name. enrolled: the identities of the gallery."""
    right = wrong = unknown = stranger_frames = stranger_named = 0
    stranger_tracks: set = set()
    for person, hits in truth_ids(frames, outputs).items():
        identity = IDENTITY_OF[person]
        known = identity in enrolled
        for _, tf in hits:
            name = tf.category.name if tf is not None and tf.category is not None else None
            if known:
                if name is None:
                    unknown += 1
                elif name == identity:
                    right += 1
                else:
                    wrong += 1
            else:
                stranger_frames += 1
                if name is not None:
                    wrong += 1
                    stranger_named += 1
                    stranger_tracks.add((person, tf.key or tf.track_id))
    return {"right": right, "wrong": wrong, "unknown": unknown,
            "stranger_frames": stranger_frames, "stranger_named": stranger_named,
            "stranger_tracks_named": len(stranger_tracks)}
