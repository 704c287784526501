"""Photos -> their largest faces, aligned and embedded (enrolment/photos.py puts them in a gallery).

Shared by enrolment (``FaceRecognitionLearner.fit_reference``, ``face-perception enroll``),
``face-perception embed``, folder alignment and the evaluations, so that all of them treat photos
the same way: the largest detected face of each image is aligned and embedded
(one batched embedder call per chunk of images); images without a face or unreadable files are
reported, never silently dropped. Enrolment refuses photos whose face is too small, blurred or
turned away (``face_quality``), with the reason: a poor reference makes wrong names later.
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.imageio import ImageError, read_image_bgr
from face_perception.types import Face

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CHUNK = 32  # chips per embedder call: bounded memory for large folders


@dataclass
class EmbeddedImages:
    """Embeddings of the images that had a face, and what happened to the others."""

    embeddings: np.ndarray            # (N, D) float32, L2-normalised
    files: list = field(default_factory=list)           # the N images, in order
    no_face: list = field(default_factory=list)
    several_faces: list = field(default_factory=list)   # embedded with their largest face
    unreadable: list = field(default_factory=list)      # (file, reason)
    refused: list = field(default_factory=list)         # (file, quality reasons): not embedded
    qualities: list = field(default_factory=list)       # quality_score of each embedded face


def largest_face(faces: Sequence[Face]) -> Face:
    return max(faces, key=lambda f: f.area)


def find_face(detector, image: np.ndarray) -> tuple[Optional[Face], int]:
    """(largest face or None, number of faces detected) in an image.

    When the detector finds nothing, the image may be a tight or already aligned face crop
    (the seed enrolls aligned chips): the landmark search of the Recognizer then looks for a
    face in a padded crop around the whole image.
    """
    from face_perception.recognition.recognizer import find_landmarks_in_boxes

    faces = detector.detect(image)
    if faces:
        return largest_face(faces), len(faces)
    h, w = image.shape[:2]
    (lms,) = find_landmarks_in_boxes(detector, image, [np.array([0, 0, w, h], np.float32)])
    if lms is None:
        return None, 0
    return Face([0, 0, w, h], 0.0, lms), 1


def list_images(folder) -> list[Path]:
    folder = Path(folder)
    return sorted(f for f in folder.iterdir()
                  if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def image_folder(path) -> dict[str, list[Path]]:
    """identity -> sorted image files of an ImageFolder tree (one sub-folder per identity)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder not found: {path!s}")
    tree = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        files = list_images(sub)
        if files:
            tree[sub.name] = files
    if not tree:
        raise ValueError(f"{path!s} has no identity sub-folders with images "
                         f"({', '.join(IMAGE_SUFFIXES)})")
    return tree


def embed_largest_faces(detector, embedder, files: Sequence,
                        check_quality: bool = False) -> EmbeddedImages:
    """Detect, align and embed the largest face of every image file. With ``check_quality``
    (enrolment), faces that fail ``face_quality.assess_face`` are refused with the reason."""
    from face_perception.recognition.face_quality import assess_face, quality_score

    out = EmbeddedImages(np.zeros((0, embedder.meta.embedding_size), np.float32))
    chunks, chips = [], []
    for file in files:
        try:
            image = read_image_bgr(file)
        except (ImageError, FileNotFoundError) as exc:
            out.unreadable.append((str(file), str(exc)))
            log.warning("skipping %s: %s", file, exc)
            continue
        face, count = find_face(detector, image)
        if face is None:
            out.no_face.append(str(file))
            log.warning("no face found in %s", file)
            continue
        chip = embedder.align(image, face.landmarks)
        if check_quality:
            quality = assess_face(face.landmarks, chip)
            if not quality.ok:
                out.refused.append((str(file), "; ".join(quality.reasons)))
                log.warning("refusing %s: %s", file, "; ".join(quality.reasons))
                continue
        if count > 1:
            out.several_faces.append(str(file))
        chips.append(chip)
        out.files.append(str(file))
        out.qualities.append(quality_score(image, face))
        if len(chips) == CHUNK:
            chunks.append(embedder.embed_chips(np.stack(chips)))
            chips = []
    if chips:
        chunks.append(embedder.embed_chips(np.stack(chips)))
    if chunks:
        out.embeddings = np.concatenate(chunks).astype(np.float32)
    return out
