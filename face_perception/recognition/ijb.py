"""IJB-B / IJB-C 1:1 template verification from the benchmark's meta files (InsightFace layout).

A benchmark folder holds ``loose_crop/<image>`` and ``meta/``::

    <x>_face_tid_mid.txt        image_name template_id media_id       (one line per face image)
    <x>_name_5pts_score.txt     image_name x1 y1 ... x5 y5 det_score  (same images, same order)
    <x>_template_pair_label.txt template_id_1 template_id_2 label     (1 = same person)

with ``<x>`` = ijbb or ijbc. Each face is aligned from its five points (no detector), embedded
with its horizontal mirror added (flip test), weighted by its detector score and, by default,
left un-normalised so that the feature norm also weighs it (InsightFace's N1 D1 F2 setting).
Faces of one media (frames of a video, or a single photo) are averaged, a template is the sum
of its media features, L2-normalised; a pair's score is the cosine of its two templates. TAR is
reported at FAR 1e-6 .. 1e-1 (only where there are enough impostor pairs to measure it).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Union

import numpy as np

from face_perception.data import DatasetError

PROTOCOLS = ("ijbb", "ijbc")
IJB_FARS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
CHUNK = 64


def meta_files(root: Union[str, os.PathLike], name: str) -> dict:
    """{'tid_mid', 'five_points', 'pairs'}: the three meta file paths of protocol ``name``."""
    meta = Path(root) / "meta"
    return {"tid_mid": meta / f"{name}_face_tid_mid.txt",
            "five_points": meta / f"{name}_name_5pts_score.txt",
            "pairs": meta / f"{name}_template_pair_label.txt"}


def find_protocol(root: Union[str, os.PathLike]) -> Optional[str]:
    """'ijbb' or 'ijbc' when ``root/meta`` holds that benchmark's face list, else None."""
    for name in PROTOCOLS:
        if meta_files(root, name)["tid_mid"].is_file():
            return name
    return None


@dataclass
class IJBSet:
    """The meta data of one benchmark: per face image its template, media, 5 points and
    detector score; per template pair the two template ids and the label."""

    root: Path
    name: str
    images: List[str]
    templates: np.ndarray
    medias: np.ndarray
    landmarks: np.ndarray
    det_scores: np.ndarray
    pair_t1: np.ndarray
    pair_t2: np.ndarray
    pair_labels: np.ndarray

    @property
    def image_dir(self) -> Path:
        return self.root / "loose_crop"


# ---------------------------------------------------------------------------- meta files
def _rows(path: Path, columns: int, what: str):
    """(line number, fields) of the non-blank lines; each must have ``columns`` fields."""
    if not path.is_file():
        raise FileNotFoundError(f"IJB meta file not found: {path} ({what})")
    with open(path, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != columns:
                raise DatasetError(f"{path}:{lineno}: expected {columns} columns ({what}), got "
                                   f"{len(fields)}: {line.strip()!r}")
            yield lineno, fields


def _ints(path: Path, columns: int, what: str) -> np.ndarray:
    """An (N, columns) int64 table. Fast path for the 15-million-line IJB-C pair list; on any
    irregularity the file is re-read line by line to name the bad line."""
    if not path.is_file():
        raise FileNotFoundError(f"IJB meta file not found: {path} ({what})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an empty file warns; it is reported below
            values = np.loadtxt(path, dtype=np.int64, ndmin=2)
        if values.size and values.shape[1] == columns:
            return values
    except ValueError:
        pass
    out = []
    for lineno, fields in _rows(path, columns, what):
        if not all(f.lstrip("-").isdigit() for f in fields):
            raise DatasetError(f"{path}:{lineno}: expected integers ({what}), got "
                               f"{' '.join(fields)!r}")
        out.append([int(f) for f in fields])
    if not out:
        raise DatasetError(f"{path}: the file is empty ({what})")
    return np.array(out, np.int64)


def read_ijb(root: Union[str, os.PathLike], name: Optional[str] = None) -> IJBSet:
    """Read and cross-check the three meta files of the benchmark in ``root``."""
    root = Path(root)
    if name is None:
        name = find_protocol(root)
        if name is None:
            raise FileNotFoundError(f"no IJB meta files in {root / 'meta'} (expected "
                                    "ijbb_face_tid_mid.txt or ijbc_face_tid_mid.txt)")
    if name not in PROTOCOLS:
        raise ValueError(f"IJB protocol must be one of {PROTOCOLS}, got {name!r}")
    files = meta_files(root, name)
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(f"IJB meta file not found: {path}")
    images, templates, medias = [], [], []
    for lineno, (img, tid, mid) in _rows(files["tid_mid"], 3,
                                         "image_name template_id media_id"):
        if not (tid.isdigit() and mid.isdigit()):
            raise DatasetError(f"{files['tid_mid']}:{lineno}: template and media ids must be "
                               f"integers, got {tid!r} {mid!r}")
        images.append(img)
        templates.append(int(tid))
        medias.append(int(mid))
    if not images:
        raise DatasetError(f"{files['tid_mid']}: the file is empty")
    five = list(_rows(files["five_points"], 12, "image_name x1 y1 ... x5 y5 score"))
    if len(five) != len(images):
        raise DatasetError(f"{files['five_points']}: {len(five)} faces, but "
                           f"{files['tid_mid'].name} lists {len(images)}")
    landmarks = np.zeros((len(images), 5, 2), np.float32)
    scores = np.zeros(len(images), np.float32)
    for i, (lineno, fields) in enumerate(five):
        where = f"{files['five_points']}:{lineno}"
        if fields[0] != images[i]:
            raise DatasetError(f"{where}: image {fields[0]!r}, but line {i + 1} of "
                               f"{files['tid_mid'].name} is {images[i]!r} (same order needed)")
        try:
            values = np.array([float(v) for v in fields[1:]], np.float64)
        except ValueError:
            raise DatasetError(f"{where}: landmarks and score must be numbers, got "
                               f"{' '.join(fields[1:])!r}") from None
        if not np.isfinite(values).all():
            raise DatasetError(f"{where}: non-finite landmark or score")
        landmarks[i] = values[:10].reshape(5, 2)
        scores[i] = values[10]
    pairs = _ints(files["pairs"], 3, "template_id_1 template_id_2 label")
    bad = np.flatnonzero(~np.isin(pairs[:, 2], (0, 1)))
    if bad.size:
        raise DatasetError(f"{files['pairs']}: pair {bad[0] + 1} has label {pairs[bad[0], 2]}; "
                           "labels are 1 (same person) or 0")
    known = np.unique(templates)
    missing = np.flatnonzero(~np.isin(pairs[:, :2], known).all(axis=1))
    if missing.size:
        t = [v for v in pairs[missing[0], :2] if v not in set(known.tolist())][0]
        raise DatasetError(f"{files['pairs']}: pair {missing[0] + 1} uses template {t}, which "
                           f"{files['tid_mid'].name} does not list")
    return IJBSet(root, name, images, np.array(templates, np.int64),
                  np.array(medias, np.int64), landmarks, scores, pairs[:, 0].copy(),
                  pairs[:, 1].copy(), pairs[:, 2].astype(bool))


# ---------------------------------------------------------------------------- features
def image_features(embedder, ijb: IJBSet, flip: bool = True) -> np.ndarray:
    """Raw (un-normalised) embedding of every face, plus that of its mirror image when
    ``flip``; faces are aligned from the meta file's five points."""
    from face_perception.imageio import read_image_bgr

    out = np.zeros((len(ijb.images), embedder.meta.embedding_size), np.float32)
    for start in range(0, len(ijb.images), CHUNK):
        stop = min(start + CHUNK, len(ijb.images))
        chips = np.stack([embedder.align(read_image_bgr(ijb.image_dir / ijb.images[i]),
                                         ijb.landmarks[i]) for i in range(start, stop)])
        feats = embedder.embed_raw(chips)
        if flip:
            feats = feats + embedder.embed_raw(np.ascontiguousarray(chips[:, :, ::-1]))
        out[start:stop] = feats
    return out


def template_features(features: np.ndarray, templates: np.ndarray, medias: np.ndarray):
    """(template ids, L2-normalised template features): the mean feature of each media of a
    template, summed over its media."""
    feats = np.asarray(features, np.float64)
    key = np.stack([templates, medias], axis=1)
    groups, media_of = np.unique(key, axis=0, return_inverse=True)
    media_of = media_of.reshape(-1)
    sums = np.zeros((len(groups), feats.shape[1]))
    np.add.at(sums, media_of, feats)
    media_means = sums / np.bincount(media_of, minlength=len(groups))[:, None]
    tids, template_of = np.unique(groups[:, 0], return_inverse=True)
    out = np.zeros((len(tids), feats.shape[1]))
    np.add.at(out, template_of.reshape(-1), media_means)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return tids, out / np.maximum(norms, 1e-12)


def pair_scores(tids: np.ndarray, template_feats: np.ndarray, t1, t2) -> np.ndarray:
    """Cosine similarity of each template pair (t1[i], t2[i])."""
    i1, i2 = np.searchsorted(tids, t1), np.searchsorted(tids, t2)
    out = np.empty(len(i1))
    for start in range(0, len(i1), 100_000):  # bounded memory on IJB-C's 15.7M pairs
        s = slice(start, start + 100_000)
        out[s] = np.einsum("ij,ij->i", template_feats[i1[s]], template_feats[i2[s]])
    return out


def evaluate_ijb(embedder, root: Union[str, os.PathLike], name: Optional[str] = None,
                 flip: bool = True, detector_score: bool = True, norm_score: bool = True,
                 roc_path: Optional[Union[str, os.PathLike]] = None) -> dict:
    """The 1:1 verification metrics dict (``VerificationReport.to_dict()`` at FAR 1e-6 ..
    1e-1, plus ``dataset``, ``dataset_kind`` 'ijb', ``protocol``, ``num_templates``,
    ``num_images``, ``model``, ``roc_png``). ``norm_score=False`` normalises each face's
    feature before pooling; ``detector_score=False`` ignores the detector scores."""
    from face_perception.recognition.verification import evaluate_verification, save_roc_plot

    ijb = read_ijb(root, name)
    feats = image_features(embedder, ijb, flip=flip)
    if not norm_score:
        feats = feats / np.maximum(np.linalg.norm(feats, axis=1, keepdims=True), 1e-12)
    if detector_score:
        feats = feats * ijb.det_scores[:, None]
    tids, tfeats = template_features(feats, ijb.templates, ijb.medias)
    scores = pair_scores(tids, tfeats, ijb.pair_t1, ijb.pair_t2)
    report = evaluate_verification(scores, ijb.pair_labels, fars=IJB_FARS,
                                   n_folds=min(10, len(scores)))
    out = report.to_dict()
    out.update({"dataset": str(root), "dataset_kind": "ijb", "protocol": ijb.name.upper(),
                "num_templates": int(len(tids)), "num_images": len(ijb.images),
                "model": embedder.meta.name, "model_threshold": float(embedder.meta.threshold),
                "skipped_pairs": []})
    if roc_path is not None:
        out["roc_png"] = str(save_roc_plot(report, roc_path, title=ijb.name.upper()))
    return out
