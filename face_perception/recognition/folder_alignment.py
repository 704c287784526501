"""Align an ImageFolder tree: each image's largest face warped to an ArcFace-style chip, same tree.

Shared by ``FaceRecognitionLearner.align`` and ``face-perception align``.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from face_perception.alignment import align_to_template, arcface_template
from face_perception.files import atomic_write_bytes
from face_perception.imageio import ImageError, read_image_bgr
from face_perception.recognition.params import int_at_least
from face_perception.recognition.photo_faces import find_face, image_folder

log = logging.getLogger(__name__)

def align_image_folder(detector, data, dest, crop_size: int = 112, silent: bool = False) -> dict:
    """Align every image of the ImageFolder tree ``data`` into ``dest`` with the same structure.

    Each image's largest face (``detector``) is warped onto the ArcFace template scaled to
    ``crop_size`` (the InsightFace dataset geometry). ``dest`` may not be ``data``, inside it, or
    contain it (the source is never overwritten). Returns a report dict with the images that had
    no face (skipped), several faces (largest kept) or could not be read; unless ``silent`` it is
    also printed.
    """
    import cv2

    crop_size = int_at_least("crop_size", crop_size, 16)
    if not isinstance(data, (str, os.PathLike)) or not str(data):
        raise ValueError(f"align needs the data folder to align, got {data!r}")
    src = Path(data).resolve()
    out = Path(dest).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"data folder not found: {data!r}")
    if out == src or src in out.parents or out in src.parents:
        raise ValueError(f"dest {str(out)!r} must be outside data {str(src)!r} (and not "
                         "contain it): align never writes into its source")
    tree = image_folder(src)
    template = arcface_template(crop_size)
    report = {"aligned": 0, "images": 0, "no_face": [], "several_faces": [],
              "unreadable": [], "dest": str(out)}
    for identity, files in tree.items():
        for file in files:
            report["images"] += 1
            try:
                image = read_image_bgr(file)
            except (ImageError, FileNotFoundError) as exc:
                report["unreadable"].append(str(file))
                log.warning("skipping %s: %s", file, exc)
                continue
            face, count = find_face(detector, image)
            if face is None:
                report["no_face"].append(str(file))
                continue
            if count > 1:
                report["several_faces"].append(str(file))
            chip = align_to_template(image, face.landmarks, template, (crop_size, crop_size))
            target = out / identity / file.name
            ok, encoded = cv2.imencode(target.suffix, chip)
            if not ok:
                raise OSError(f"could not encode {target}")
            atomic_write_bytes(target, encoded.tobytes())
            report["aligned"] += 1
    if not silent:
        print(f"aligned {report['aligned']} of {report['images']} images into {out}; "
              f"no face: {len(report['no_face'])}, several faces: "
              f"{len(report['several_faces'])}, unreadable: {len(report['unreadable'])}")
        for f in report["no_face"]:
            print(f"  no face: {f}")
        for f in report["several_faces"]:
            print(f"  several faces (largest kept): {f}")
    return report
