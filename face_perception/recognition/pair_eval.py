"""Verification evaluation of a detector + embedder pipeline on face pairs.

Four kinds of dataset: an InsightFace / face.evoLVe verification ``.bin`` file (112x112 chips
already aligned to the ArcFace template: they are re-aligned into the model's own geometry
with a similarity transform, never resized), an ImageFolder tree (``num_pairs`` seeded random
positive and negative pairs; all that exist when there are fewer), an LFW ``pairs.txt``-style
list, or an IJB-B/C benchmark folder (``recognition.ijb``). Photos go through the same
largest-face path as enrolment, except when a landmark file (``lfw_landmark.txt``: given with
``landmarks=`` or found beside the pair list) gives each image's five points: then no
detector runs. Metrics come from ``face_perception.recognition.verification``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.imageio import ImageError, read_image_bgr

CHUNK = 64
BIN_TEMPLATE_SIZE = 112  # .bin crops are 112x112 in the ArcFace template


def dataset_kind(dataset) -> str:
    """'bin', 'imagefolder', 'pairs' or 'ijb' for a dataset path (clear error otherwise)."""
    from face_perception.recognition.ijb import find_protocol

    path = Path(dataset)
    if path.is_dir():
        return "ijb" if find_protocol(path) else "imagefolder"
    if not path.exists():
        raise FileNotFoundError(f"evaluation dataset not found: {dataset!s}")
    if path.suffix.lower() == ".bin":
        return "bin"
    return "pairs"


@dataclass
class VerificationPairs:
    """A verification set as read: ``kind`` 'bin' (``vbin``: its chips and labels), or
    'imagefolder' / 'pairs' (``pairs``: image pairs; ``root`` and ``landmarks`` of a pair
    list; ``note`` when an ImageFolder had fewer pairs than asked and all were used)."""

    source: str
    kind: str
    vbin: object = None
    pairs: list = field(default_factory=list)
    root: Optional[Path] = None
    landmarks: Optional[Path] = None
    note: str = ""

    @property
    def files(self) -> list:
        """Every image file of the pairs, sorted, once."""
        return sorted({str(p.first) for p in self.pairs} | {str(p.second) for p in self.pairs})

    @property
    def labels(self) -> np.ndarray:
        """Whether each pair (each chip pair of a .bin) shows one person."""
        if self.kind == "bin":
            return np.asarray(self.vbin.issame, bool)
        return np.array([p.issame for p in self.pairs], bool)


def read_verification_pairs(dataset, num_pairs: int = 1000, seed: int = 0,
                            images_root: Optional[Union[str, os.PathLike]] = None,
                            landmarks: Optional[Union[str, os.PathLike]] = None,
                            balanced: bool = False) -> VerificationPairs:
    """The one reader of a verification dataset given as pairs: a ``.bin`` file, an ImageFolder
    tree (``num_pairs`` seeded random pairs, half same-person) or a pair list (images under
    ``images_root``, default its folder or its ``lfw/``; ``landmarks``, default the
    ``lfw_landmark.txt`` beside it). An ImageFolder with fewer pairs of a kind than asked gives
    all of that kind (with a ``note``), or with ``balanced`` as many same as different pairs
    as it can (validation during training). IJB folders are templates, not pairs:
    DatasetError (evaluate them with :func:`evaluate_verification_dataset`)."""
    from face_perception.data import DatasetError
    from face_perception.data.pairs import random_pairs, read_lfw_pairs

    kind = dataset_kind(dataset)
    source = str(dataset)
    if kind == "ijb":
        raise DatasetError(f"{source}: an IJB-B/C folder is a template protocol, not "
                           "verification pairs")
    if kind == "bin":
        from face_perception.data.verification_bin import read_verification_bin

        return VerificationPairs(source, kind, vbin=read_verification_bin(dataset))
    if kind == "pairs":
        root, landmarks = pair_list_inputs(dataset, images_root, landmarks)
        return VerificationPairs(source, kind, pairs=read_lfw_pairs(dataset, root), root=root,
                                 landmarks=landmarks)
    from face_perception.data.imagefolder import list_image_folder

    folder = list_image_folder(dataset)
    if balanced:
        same = sum(n * (n - 1) // 2 for n in (len(v) for v in folder.by_identity().values()))
        total = len(folder) * (len(folder) - 1) // 2
        pairs = random_pairs(folder, max(2, min(num_pairs, 2 * same, total)), seed=seed)
        return VerificationPairs(source, kind, pairs=pairs)
    pairs = random_pairs(folder, num_pairs, seed=seed, allow_fewer=True)
    note = ""
    if len(pairs) < num_pairs:
        same = sum(p.issame for p in pairs)
        note = (f"asked for {num_pairs} pairs but {dataset} has only {len(pairs)} "
                f"({same} same, {len(pairs) - same} different); using all of them")
    return VerificationPairs(source, kind, pairs=pairs, note=note)


def embed_bin(embedder, vbin) -> np.ndarray:
    """Embeddings of all 2N chips of a verification set, re-aligned to the model template."""
    from face_perception.alignment import ARCFACE_TEMPLATE_112, warp_between_templates

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
    from face_perception.recognition.photo_faces import find_face

    def chips():
        for f in files:
            try:
                image = read_image_bgr(f)
            except (ImageError, FileNotFoundError):
                continue
            face, _ = find_face(detector, image)
            if face is not None:
                yield str(f), embedder.align(image, face.landmarks)

    return _embed_in_chunks(embedder, chips())


def _embed_in_chunks(embedder, named_chips) -> dict:
    """name -> embedding of (name, aligned chip) pairs, CHUNK chips per network call."""
    result, chips, names = {}, [], []
    for name, chip in named_chips:
        chips.append(chip)
        names.append(name)
        if len(chips) == CHUNK:
            result.update(zip(names, embedder.embed_chips(np.stack(chips))))
            chips, names = [], []
    if chips:
        result.update(zip(names, embedder.embed_chips(np.stack(chips))))
    return result


LANDMARK_FILE = "lfw_landmark.txt"  # looked for beside a pair list, as the toolkit lays it out


def pair_list_inputs(pairs_file, images_root=None, landmarks=None):
    """(images root, landmark file or None) of a pair list: the root defaults to the list's
    folder, or its ``lfw/`` sub-folder when there is one (``$LFW_ROOT/pairs.txt`` +
    ``$LFW_ROOT/lfw/``); the landmark file to ``lfw_landmark.txt`` beside the list."""
    from face_perception.data.pairs import default_images_root

    folder = Path(pairs_file).parent
    if images_root is None:
        images_root = default_images_root(pairs_file)
    if landmarks is None and (folder / LANDMARK_FILE).is_file():
        landmarks = folder / LANDMARK_FILE
    return Path(images_root), (Path(landmarks) if landmarks is not None else None)


def _embed_with_landmarks(embedder, files, root: Path, landmarks_file: Path) -> dict:
    """path -> embedding, each image aligned from its points in ``landmarks_file`` (keys are
    paths relative to ``root``; a bare file name also matches, as LFW's are unique)."""
    from face_perception.data import DatasetError
    from face_perception.data.landmarks import read_landmark_list

    table = read_landmark_list(landmarks_file)
    by_name = {k.rsplit("/", 1)[-1]: v for k, v in table.items()}

    def chips():
        for f in files:
            rel = Path(f).relative_to(root).as_posix() if Path(f).is_relative_to(root) else f
            points = table.get(rel, by_name.get(Path(f).name))
            if points is None:
                raise DatasetError(f"{landmarks_file}: no landmarks for {rel}")
            yield str(f), embedder.align(read_image_bgr(f), points)

    return _embed_in_chunks(embedder, chips())


def evaluate_verification_dataset(detector, embedder, dataset, num_pairs: int = 1000,
                                  seed: int = 0,
                                  images_root: Optional[Union[str, os.PathLike]] = None,
                                  roc_path: Optional[Union[str, os.PathLike]] = None,
                                  n_folds: int = 10,
                                  landmarks: Optional[Union[str, os.PathLike]] = None) -> dict:
    """Face verification metrics of ``embedder`` on a dataset: a verification ``.bin``, an
    ImageFolder tree, a pairs list or an IJB-B/C folder. Metrics dict
    (``VerificationReport.to_dict()`` plus ``dataset``, ``kind``,
    ``skipped_pairs`` (pairs with an image that has no face or cannot be read), ``roc_png``,
    ``alignment`` (how faces were found), ``pairs_note`` (set when an ImageFolder had fewer
    pairs than ``num_pairs``: all of them were used))."""
    from face_perception.recognition.verification import evaluate_verification, save_roc_plot

    kind = dataset_kind(dataset)
    if kind == "ijb":
        from face_perception.recognition.ijb import evaluate_ijb

        out = evaluate_ijb(embedder, dataset, roc_path=roc_path)
        out["alignment"] = "five points of the IJB meta file"
        return out
    skipped: list = []
    alignment = "detector (largest face)"
    vset = read_verification_pairs(dataset, num_pairs, seed, images_root, landmarks)
    if kind == "bin":
        alignment = "chips re-aligned from the ArcFace 112 template"
        emb = embed_bin(embedder, vset.vbin)
        sims = np.sum(emb[0::2] * emb[1::2], axis=1)
        labels = vset.labels
        name = vset.vbin.name
    else:
        pairs = vset.pairs
        if vset.landmarks is not None:
            emb = _embed_with_landmarks(embedder, vset.files, vset.root, vset.landmarks)
            alignment = f"landmarks from {vset.landmarks}"
        else:
            emb = _embed_files(detector, embedder, vset.files)
        kept = [p for p in pairs if str(p.first) in emb and str(p.second) in emb]
        skipped = [(str(p.first), str(p.second)) for p in pairs
                   if not (str(p.first) in emb and str(p.second) in emb)]
        if not kept:
            raise ValueError(f"{dataset}: no pair has a face in both images")
        sims = np.array([float(emb[str(p.first)] @ emb[str(p.second)]) for p in kept])
        labels = np.array([p.issame for p in kept], bool)
        name = Path(dataset).stem or Path(dataset).name
    # Every fold needs a same and a different pair to choose a threshold on the others.
    folds = min(n_folds, int(labels.sum()), int((~labels).sum())) if kind == "imagefolder" \
        else min(n_folds, len(sims))
    report = evaluate_verification(sims, labels, kind="similarity", n_folds=max(folds, 2))
    out = report.to_dict()
    out.update({"dataset": str(dataset), "dataset_kind": kind, "model": embedder.meta.name,
                "model_threshold": float(embedder.meta.threshold),
                "skipped_pairs": skipped, "alignment": alignment, "pairs_note": vset.note})
    if roc_path is not None:
        out["roc_png"] = str(save_roc_plot(report, roc_path, title=name))
    return out
