"""Verification evaluation of a detector + embedder pipeline on face pairs.

Three kinds of dataset: an InsightFace / face.evoLVe verification ``.bin`` file (112x112 chips
already aligned to the ArcFace template: they are re-aligned into the model's own geometry
with a similarity transform, never resized), an ImageFolder tree (``num_pairs`` seeded random
positive and negative pairs), or an LFW ``pairs.txt``-style list. Photos go through the same
largest-face path as enrolment. Metrics come from ``face_perception.recognition.verification``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.imageio import ImageError, read_image_bgr

CHUNK = 64
BIN_TEMPLATE_SIZE = 112  # .bin crops are 112x112 in the ArcFace template


def dataset_kind(dataset) -> str:
    """'bin', 'imagefolder' or 'pairs' for a dataset path (clear error otherwise)."""
    path = Path(dataset)
    if path.is_dir():
        return "imagefolder"
    if not path.exists():
        raise FileNotFoundError(f"evaluation dataset not found: {dataset!s}")
    if path.suffix.lower() == ".bin":
        return "bin"
    return "pairs"


def embed_bin(embedder, vbin) -> np.ndarray:
    """Embeddings of all 2N chips of a verification set, re-aligned to the model template."""
    from face_perception.recognition.alignment import ARCFACE_TEMPLATE_112, warp_between_templates

    meta = embedder.meta
    out = []
    for start in range(0, len(vbin.images), CHUNK):
        chips = [vbin.decode(i) for i in range(start, min(start + CHUNK, len(vbin.images)))]
        warped = []
        for chip in chips:
            h, w = chip.shape[:2]
            src = ARCFACE_TEMPLATE_112 * np.array([w / BIN_TEMPLATE_SIZE, h / BIN_TEMPLATE_SIZE],
                                                  np.float32)
            warped.append(warp_between_templates(chip, src, meta.template, meta.input_size))
        out.append(embedder.embed_chips(np.stack(warped)))
    return np.concatenate(out)


def _embed_files(detector, embedder, files) -> dict:
    """path -> embedding for every file with a face (others are missing from the dict)."""
    from face_perception.recognition.enrollment import find_face

    result, chips, names = {}, [], []
    for f in files:
        try:
            image = read_image_bgr(f)
        except (ImageError, FileNotFoundError):
            continue
        face, _ = find_face(detector, image)
        if face is None:
            continue
        chips.append(embedder.align(image, face.landmarks))
        names.append(str(f))
        if len(chips) == CHUNK:
            result.update(zip(names, embedder.embed_chips(np.stack(chips))))
            chips, names = [], []
    if chips:
        result.update(zip(names, embedder.embed_chips(np.stack(chips))))
    return result


def evaluate_verification_dataset(detector, embedder, dataset, num_pairs: int = 1000,
                                  seed: int = 0,
                                  images_root: Optional[Union[str, os.PathLike]] = None,
                                  roc_path: Optional[Union[str, os.PathLike]] = None,
                                  n_folds: int = 10) -> dict:
    """Face verification metrics of ``embedder`` on a dataset: a verification ``.bin``, an
    ImageFolder tree or a pairs list. Metrics dict (``VerificationReport.to_dict()`` plus
    ``dataset``, ``kind``, ``skipped_pairs`` (pairs with an image that has no face or cannot be
    read), ``roc_png``)."""
    from face_perception.recognition.verification import evaluate_verification, save_roc_plot

    kind = dataset_kind(dataset)
    skipped: list = []
    if kind == "bin":
        from face_perception.data.verification_bin import read_verification_bin

        vbin = read_verification_bin(dataset)
        emb = embed_bin(embedder, vbin)
        sims = np.sum(emb[0::2] * emb[1::2], axis=1)
        labels = np.asarray(vbin.issame, bool)
        name = vbin.name
    else:
        from face_perception.data.pairs import random_pairs, read_lfw_pairs

        if kind == "imagefolder":
            from face_perception.data.imagefolder import list_image_folder

            pairs = random_pairs(list_image_folder(dataset), num_pairs, seed=seed)
        else:
            root = Path(images_root) if images_root is not None else Path(dataset).parent
            pairs = read_lfw_pairs(dataset, root)
        files = sorted({str(p.first) for p in pairs} | {str(p.second) for p in pairs})
        emb = _embed_files(detector, embedder, files)
        kept = [p for p in pairs if str(p.first) in emb and str(p.second) in emb]
        skipped = [(str(p.first), str(p.second)) for p in pairs
                   if not (str(p.first) in emb and str(p.second) in emb)]
        if not kept:
            raise ValueError(f"{dataset}: no pair has a face in both images")
        sims = np.array([float(emb[str(p.first)] @ emb[str(p.second)]) for p in kept])
        labels = np.array([p.issame for p in kept], bool)
        name = Path(dataset).stem or Path(dataset).name
    report = evaluate_verification(sims, labels, kind="similarity",
                                   n_folds=min(n_folds, len(sims)))
    out = report.to_dict()
    out.update({"dataset": str(dataset), "dataset_kind": kind, "model": embedder.meta.name,
                "model_threshold": float(embedder.meta.threshold),
                "skipped_pairs": skipped})
    if roc_path is not None:
        out["roc_png"] = str(save_roc_plot(report, roc_path, title=name))
    return out
