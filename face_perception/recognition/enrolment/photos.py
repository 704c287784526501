"""Enrolment: image files -> largest-face embeddings -> gallery identities (-> gallery file).

Shared by ``FaceRecognitionLearner.fit_reference`` and ``face-perception enroll`` so that both
treat photos the same way: the largest detected face of each image is aligned and embedded
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
from face_perception.recognition.enrolment.gallery_file import SavedGallery, save_gallery_file
from face_perception.recognition.enrolment.names import check_new_name
from face_perception.recognition.recognizer import open_gallery_file
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


def enroll_tree(gallery, detector, embedder, root, check_quality: bool = True) -> dict:
    """Add every identity sub-folder of ``root`` to ``gallery`` (appending to identities it
    already has). Returns a report: identities, images, embedded, no_face, several_faces,
    unreadable, refused ([file, reason] of photos refused for quality)."""
    root = Path(root)
    report = {"identities": [], "images": 0, "embedded": 0, "no_face": [],
              "several_faces": [], "unreadable": [], "refused": []}
    for identity, files in image_folder(root).items():
        result = embed_largest_faces(detector, embedder, files, check_quality=check_quality)
        report["images"] += len(files)
        report["no_face"] += result.no_face
        report["several_faces"] += result.several_faces
        report["unreadable"] += [f for f, _ in result.unreadable]
        report["refused"] += [[f, why] for f, why in result.refused]
        if len(result.files):
            sources = [Path(f).relative_to(root).as_posix() for f in result.files]
            gallery.add(identity, result.embeddings, sources=sources,
                        qualities=result.qualities)
            report["identities"].append(identity)
            report["embedded"] += len(result.files)
    return report


def enrol_photos(gallery, detector, embedder, paths: Sequence, name: Optional[str] = None,
                 replace: bool = False, check_quality: bool = True) -> dict:
    """``face-perception enroll`` from photos: with ``name``, every image of ``paths`` (files or
    folders) is that one person; without, ``paths`` is one folder with a sub-folder per person.
    ``replace`` removes the identities first. Returns the report of ``enroll_tree``."""
    from face_perception.imageio import expand_image_paths

    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no photos given")
    if name is not None:
        files = expand_image_paths(paths)
        if not files:
            raise FileNotFoundError(f"no image files in {paths[0]}")
        if replace and name in gallery:
            gallery.remove(name)
        result = embed_largest_faces(detector, embedder, files, check_quality=check_quality)
        if len(result.files):
            gallery.add(name, result.embeddings, sources=[Path(f).name for f in result.files],
                        qualities=result.qualities)
        return {"identities": [name] if len(result.files) else [],
                "images": len(files), "embedded": len(result.files),
                "no_face": result.no_face, "several_faces": result.several_faces,
                "unreadable": [f for f, _ in result.unreadable],
                "refused": [[f, why] for f, why in result.refused]}
    if len(paths) > 1:
        raise ValueError("several paths need a name (they are photos of one person); "
                         "without one give one folder with a sub-folder per person")
    if not paths[0].is_dir():
        raise FileNotFoundError(f"enrolment needs a folder with one sub-folder per person, "
                                f"got {paths[0]}")
    if replace:
        for person in image_folder(paths[0]):
            if person in gallery:
                gallery.remove(person)
    return enroll_tree(gallery, detector, embedder, paths[0], check_quality=check_quality)


@dataclass
class PhotoEnrolment:
    """What ``enrol_photos_into_file`` did: the report of ``enrol_photos`` (identities, images,
    embedded, no_face, several_faces, unreadable, refused) and the gallery file as saved (None
    when no photo gave a usable face: nothing was written)."""

    report: dict
    model: str
    saved: Optional[SavedGallery] = None

    def to_dict(self) -> dict:
        """The summary ``face-perception enroll --json`` prints."""
        r = self.report
        saved = self.saved.to_dict() if self.saved is not None else {}
        return {"gallery": saved.get("gallery"), "model": self.model,
                "enrolled": r["identities"], "images": r["images"], "embedded": r["embedded"],
                "no_face": r["no_face"], "unreadable": r["unreadable"], "refused": r["refused"],
                **{k: v for k, v in saved.items() if k != "gallery"}}


def enrol_photos_into_file(path, detector, embedder, photos: Sequence,
                           name: Optional[str] = None, replace: bool = False,
                           check_quality: bool = True) -> PhotoEnrolment:
    """``enrol_photos`` into the gallery file at ``path`` (created when missing; one of another
    model is refused), saved only when at least one photo gave a usable face. ``name`` is
    checked as a new enrolment's name (``names.check_new_name``)."""
    if name is not None:
        name = check_new_name(name)
    gallery = open_gallery_file(path, embedder.meta, create=True)
    report = enrol_photos(gallery, detector, embedder, photos, name=name, replace=replace,
                          check_quality=check_quality)
    out = PhotoEnrolment(report, embedder.meta.name)
    if report["embedded"]:
        out.saved = save_gallery_file(gallery, path, embedder.meta)
    return out
