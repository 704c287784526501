"""The training toolkit's VGGFace2 layout: ``--train_data_root`` images, ``--train_list``
(``meta/train_list.txt``) and ``--train_landmarks`` (the ``bb_landmark/`` folder or one
landmark file), listed as faces with their five points, without decoding any image.

Labels are the identity folders (``n000002``) in sorted order, as ImageFolder numbers them.
The landmark file may be VGGFace2's ``loose_landmark_<split>.csv`` (keys without extension)
or an ``lfw_landmark.txt``-style list (keys with extension); the list and the landmarks are
matched by name, not by line number, so a landmark file covering more images is fine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from face_perception.data.errors import DatasetError
from face_perception.data.landmarks import (
    read_image_list,
    read_landmark_list,
    read_vggface2_landmarks,
)

PathLike = Union[str, os.PathLike]


@dataclass
class FaceList:
    """Images with one face each and its 5 landmarks (original image pixels).

    identities: sorted identity names; samples: (image path, identity index) in list order;
    landmarks: (N, 5, 2) float32, row i for samples[i].
    """

    root: Path
    identities: List[str]
    samples: List[Tuple[Path, int]]
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def num_classes(self) -> int:
        return len(self.identities)

    def chip(self, index: int, meta) -> np.ndarray:
        """Face ``index`` aligned into ``meta``'s geometry (a ModelMeta): HxWx3 BGR uint8."""
        from face_perception.alignment import align_to_template
        from face_perception.imageio import read_image_bgr

        path, _ = self.samples[index]
        image = read_image_bgr(path)
        return align_to_template(image, self.landmarks[index], meta.template, meta.input_size,
                                 fit=meta.template_fit)


def find_landmark_file(train_landmarks: PathLike, train_list: PathLike) -> Path:
    """The landmark file for ``train_list``: ``train_landmarks`` itself, or inside that folder
    ``loose_landmark_<split>.csv`` with the split named by the list (train/test), else the one
    ``loose_landmark_*.csv`` there."""
    path = Path(train_landmarks)
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"landmarks not found: {path} (give the bb_landmark folder or "
                                "a landmark file)")
    list_name = Path(train_list).name
    for split in ("train", "test"):
        candidate = path / f"loose_landmark_{split}.csv"
        if split in list_name and candidate.is_file():
            return candidate
    found = sorted(path.glob("loose_landmark_*.csv"))
    if len(found) == 1:
        return found[0]
    raise DatasetError(f"{path}: cannot tell which landmark file belongs to {list_name}: "
                       f"found {[p.name for p in found] or 'no loose_landmark_*.csv'}")


def read_vggface2_list(train_data_root: PathLike, train_list: PathLike,
                       train_landmarks: PathLike, check_exists: bool = True) -> FaceList:
    """List the images of ``train_list`` under ``train_data_root`` with their landmarks.

    Raises FileNotFoundError for a missing file/folder and DatasetError naming ``file:line``
    for a list line without landmarks, a missing image or a malformed line.
    """
    root, list_path = Path(train_data_root), Path(train_list)
    if not root.is_dir():
        raise FileNotFoundError(f"training image folder not found: {root}")
    names = read_image_list(list_path)
    lm_path = find_landmark_file(train_landmarks, list_path)
    table = (read_vggface2_landmarks(lm_path) if lm_path.suffix.lower() == ".csv"
             else read_landmark_list(lm_path))
    identities = sorted({n.split("/")[0] for n in names})
    label_of = {name: i for i, name in enumerate(identities)}
    samples: List[Tuple[Path, int]] = []
    points = np.zeros((len(names), 5, 2), np.float32)
    seen = set()
    for i, (lineno, name) in enumerate(_numbered(list_path, names)):
        where = f"{list_path}:{lineno}"
        if name in seen:
            raise DatasetError(f"{where}: {name} is listed twice")
        seen.add(name)
        pts = _lookup(table, name)
        if pts is None:
            raise DatasetError(f"{where}: no landmarks for {name} in {lm_path}")
        path = root / name
        if check_exists and not path.is_file():
            raise DatasetError(f"{where}: image not found: {path}")
        samples.append((path, label_of[name.split("/")[0]]))
        points[i] = pts
    return FaceList(root, identities, samples, points)


def _numbered(list_path: Path, names: List[str]):
    """(line number, name) for the non-blank lines read_image_list returned, in order."""
    lines = list_path.read_text(encoding="utf-8").splitlines()
    numbers = [i for i, line in enumerate(lines, start=1) if line.split()]
    return zip(numbers, names)


def _lookup(table, name: str) -> Optional[np.ndarray]:
    if name in table:
        return table[name]
    return table.get(os.path.splitext(name)[0])
