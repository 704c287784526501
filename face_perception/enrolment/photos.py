"""Enrolment from photos: image files -> largest-face embeddings -> gallery identities.

Shared by ``FaceRecognitionLearner.fit_reference`` and ``face-perception enroll`` so that both
enrol photos the same way (recognition/photo_faces.py finds, checks and embeds the faces).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from face_perception.enrolment.gallery_file import SavedGallery, save_gallery_file
from face_perception.enrolment.names import check_new_name
from face_perception.recognition.photo_faces import embed_largest_faces, image_folder
from face_perception.recognition.recognizer import open_gallery_file


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
