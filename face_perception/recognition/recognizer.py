"""Recognizer: faces in a frame -> identities from a gallery, in one batched embedder call.

The same object serves the CLI, the learner and the ROS recognizer node. Faces that arrive with
5 landmarks (from our Detector) are aligned directly. Faces that arrive as bare boxes (from any
other detector) get landmarks by running our Detector on an enlarged, padded crop around each
box; where it finds no face there, a box-derived approximate landmark set is used instead, and
the result says so in ``Category.extra["landmarks"]``.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

import cv2
import numpy as np

from face_perception.imageio import to_bgr_uint8
from face_perception.open_set import resolve_rule
from face_perception.types import Category, Face

# Where RetinaFace puts the 5 landmarks inside its own box, as fractions of box width/height:
# the mean over the detector's boxes on the four frontal test photos (obama, obama2, obama3,
# biden), made left/right symmetric. Used only when no detector finds the face inside a foreign
# box. Order: left eye, right eye, nose, left/right mouth corner.
BOX_RELATIVE_LANDMARKS = np.array([
    [0.274, 0.380],
    [0.726, 0.380],
    [0.500, 0.548],
    [0.281, 0.708],
    [0.719, 0.708],
], dtype=np.float32)

# Side of the square crop (in pixels, after resizing) that the detector sees per foreign box, and
# how much context around the box it includes: RetinaFace needs some margin to find a face that
# fills the box, and a fixed size lets all crops of a frame go through one batched detector call.
# 224 keeps the face at ~110 px: on the test photos the embeddings from landmarks found this way
# agree with those from the detector's own landmarks to cosine >= 0.99 at 192, 224, 256 and 320
# alike, so the smaller crop (half the pixels of 320) is used.
CROP_SIZE = 224
CROP_SCALE = 2.0
# Gallery search for naming: each identity's best-matching enrolled photo ("sample") rather than
# the mean of its photos; measured better on the shipped photos (docs/open_set.md).
DEFAULT_SEARCH_MODE = "sample"


def model_id_of(meta) -> str:
    """The identifier galleries are tagged with (ModelMeta.model_id, else its name)."""
    for attr in ("model_id", "name"):
        value = getattr(meta, attr, None)
        if value:
            return str(value)
    raise ValueError(f"embedder metadata {meta!r} has neither model_id nor name")


def open_gallery_file(path, meta, create: bool = False):
    """The gallery file at ``path`` for the embedding model ``meta``: one of another model,
    damaged, or (unless ``create``: then a new empty gallery) missing is refused with
    Gallery.load's error naming the file and the reason."""
    from pathlib import Path

    from face_perception.gallery import Gallery, load_or_create

    path, model_id, size = Path(path).expanduser(), model_id_of(meta), int(meta.embedding_size)
    if create:
        return load_or_create(path, model_id, size)
    return Gallery.load(path, model_id=model_id, embedding_size=size)


def landmarks_from_box(box) -> np.ndarray:
    """Approximate 5 landmarks for a face box (x1, y1, x2, y2) from average proportions."""
    x1, y1, x2, y2 = np.asarray(box, dtype=np.float32).reshape(4)
    return BOX_RELATIVE_LANDMARKS * np.array([x2 - x1, y2 - y1], np.float32) + \
        np.array([x1, y1], np.float32)


class Recognizer:
    """Identify faces against a gallery.

    embedder: a ``face_perception.recognition.Embedder`` (its ``meta`` gives the model id,
    embedding size and default open-set rule). gallery: a ``face_perception.gallery.Gallery``
    made with the same model (checked here: a mismatch raises ValueError naming both).
    threshold / margin: the open-set rule (``open_set.OpenSetRule``): a face is named when its
    best identity's cosine similarity reaches ``threshold`` and leads the second-best identity by
    ``margin``; each None takes the gallery's calibrated value, else the model's open-set default
    (not the model's 1:1 verification threshold, which names strangers in a gallery).
    mode: gallery search mode, "sample" (best enrolled photo of each identity) or "mean".
    detector: a ``face_perception.detection.Detector`` used to find landmarks for faces without
    them; None creates the default Detector the first time one is needed.
    """

    def __init__(self, embedder, gallery, threshold: Optional[float] = None,
                 detector=None, margin: Optional[float] = None,
                 mode: str = DEFAULT_SEARCH_MODE) -> None:
        self.embedder = embedder
        self.meta = embedder.meta
        self.model_id = model_id_of(self.meta)
        self.embedding_size = int(self.meta.embedding_size)
        self.mode = mode
        self._explicit = (None if threshold is None else float(threshold),
                          None if margin is None else float(margin))
        self.gallery = None
        self.set_gallery(gallery)
        self._detector = detector

    @property
    def threshold(self) -> float:
        """The open-set rule's similarity threshold in force."""
        return self.rule.threshold

    # ------------------------------------------------------------------ set-up
    def set_gallery(self, gallery) -> None:
        """Swap the gallery (e.g. after enrolling); refuses one made with another model."""
        if gallery is not None:
            g_id, g_size = gallery.model_id, int(gallery.embedding_size)
            if g_id != self.model_id or g_size != self.embedding_size:
                raise ValueError(
                    f"gallery was made with model {g_id!r} (embedding size {g_size}) but the "
                    f"embedder is {self.model_id!r} (embedding size {self.embedding_size}); "
                    "re-enroll the identities with this model")
        # A new gallery may bring its own calibrated rule: resolve before swapping in.
        rule, source = resolve_rule(self.meta, gallery, *self._explicit)
        self.gallery, self.rule, self.rule_source = gallery, rule, source

    @property
    def detector(self):
        if self._detector is None:
            from face_perception.detection import Detector
            self._detector = Detector()
        return self._detector

    # ------------------------------------------------------------------ landmarks
    def complete_landmarks(self, image_bgr: np.ndarray, faces: Sequence[Face]) -> list[tuple]:
        """(landmarks (5, 2), source) for every face; source is "given", "detector" or "box"."""
        out: list = [None] * len(faces)
        missing = []
        for i, face in enumerate(faces):
            if face.landmarks is not None:
                out[i] = (np.asarray(face.landmarks, np.float32), "given")
            else:
                missing.append(i)
        if missing:
            found = self._landmarks_by_detection(image_bgr, [faces[i].box for i in missing])
            for i, lms in zip(missing, found):
                out[i] = (lms, "detector") if lms is not None else \
                    (landmarks_from_box(faces[i].box), "box")
        return out

    def _landmarks_by_detection(self, image_bgr: np.ndarray, boxes) -> list:
        return find_landmarks_in_boxes(self.detector, image_bgr, boxes)

    # ------------------------------------------------------------------ embeddings
    def embed(self, image_bgr, faces: Sequence[Face]) -> np.ndarray:
        """(N, D) L2-normalised embeddings of ``faces`` in ``image_bgr``, one embedder call."""
        return self._embed(image_bgr, faces)[0]

    def _embed(self, image_bgr, faces: Sequence[Face]):
        image = to_bgr_uint8(image_bgr)
        faces = list(faces)
        if not faces:
            return np.zeros((0, self.embedding_size), np.float32), []
        for face in faces:
            if not isinstance(face, Face):
                raise TypeError(f"faces must be face_perception.types.Face, got {type(face)}")
        marks = self.complete_landmarks(image, faces)
        chips = np.stack([self.embedder.align(image, lms) for lms, _ in marks])
        emb = np.asarray(self.embedder.embed_chips(chips), dtype=np.float32)
        return emb, [src for _, src in marks]

    def identify(self, image_bgr, faces: Sequence[Face]) -> list[Optional[Category]]:
        """One entry per face: Category(name, confidence=cosine similarity) or None (unknown).

        Named by ``self.rule`` (OpenSetRule). An empty or missing gallery knows nobody: every
        face is None. ``Category.extra`` holds ``similarity``, ``second`` (the second-best
        identity's similarity, None with one identity) and ``landmarks`` ("given", "detector",
        "box").
        """
        faces = list(faces)
        # A degenerate box from a foreign detector (zero size, NaN) cannot be aligned: that face
        # is unknown, and the other faces of the frame are still identified.
        usable = [i for i, face in enumerate(faces) if _can_align(face)]
        out: list[Optional[Category]] = [None] * len(faces)
        emb, sources = self._embed(image_bgr, [faces[i] for i in usable])
        if len(emb) == 0 or self.gallery is None or len(self.gallery) == 0:
            return out
        matches = self.gallery.match(emb, self.rule, mode=self.mode)
        for i, match, src in zip(usable, matches, sources):
            if match is not None:
                match.extra = {**(match.extra or {}), "similarity": float(match.confidence),
                               "landmarks": src}
            out[i] = match
        return out


def _can_align(face) -> bool:
    """True when a face has finite landmarks, or a finite box with a positive area."""
    if not isinstance(face, Face):
        return True  # let _embed raise its TypeError
    if face.landmarks is not None:
        return bool(np.all(np.isfinite(face.landmarks)))
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return bool(np.all(np.isfinite([x1, y1, x2, y2]))) and x2 > x1 and y2 > y1


def find_landmarks_in_boxes(detector, image_bgr: np.ndarray, boxes) -> list:
    """For each box: the 5 landmarks of the best-scored face the detector finds, centred inside
    the box, in an enlarged and padded square crop around it; None where there is none. All
    crops go through one ``detect_batch`` call."""
    if not len(boxes):
        return []
    crops, transforms = [], []
    for box in boxes:
        crop, scale, origin = _square_crop(image_bgr, box, CROP_SCALE, CROP_SIZE)
        crops.append(crop)
        transforms.append((scale, origin, box))
    found = []
    for dets, (scale, origin, box) in zip(detector.detect_batch(crops), transforms):
        best = None
        x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
        for det in dets:  # sorted by score
            if det.landmarks is None:
                continue
            cx = (det.box[0] + det.box[2]) / 2 / scale + origin[0]
            cy = (det.box[1] + det.box[3]) / 2 / scale + origin[1]
            if x1 <= cx <= x2 and y1 <= cy <= y2:
                best = (det.landmarks / scale + origin).astype(np.float32)
                break
        found.append(best)
    return found


def _square_crop(image: np.ndarray, box, scale: float, size: int):
    """A square crop of side ``scale * max(box side)`` centred on the box, padded with black
    where it leaves the image, resized to ``size``. Returns (crop, pixels per source pixel,
    crop origin in source pixels)."""
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box).reshape(4))
    if not np.all(np.isfinite([x1, y1, x2, y2])) or x2 <= x1 or y2 <= y1:
        raise ValueError(f"face box must be finite with x2 > x1 and y2 > y1, got {box}")
    side = max(x2 - x1, y2 - y1) * scale
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    ox, oy = cx - side / 2, cy - side / 2
    # An affine warp does crop, pad and resize in one step.
    k = size / side
    matrix = np.array([[k, 0, -ox * k], [0, k, -oy * k]], np.float32)
    crop = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return crop, k, np.array([ox, oy], np.float32)
