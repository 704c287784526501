"""Datasets for recognition: ImageFolder trees, pair lists, verification .bin files, RecordIO.

Submodules are imported lazily, so ``import face_perception.data`` costs nothing.
"""
from __future__ import annotations

import importlib

from face_perception.data.errors import DatasetError

_EXPORTS = {
    "ImageFolder": "face_perception.data.imagefolder",
    "list_image_folder": "face_perception.data.imagefolder",
    "Pair": "face_perception.data.pairs",
    "labels_of": "face_perception.data.pairs",
    "random_pairs": "face_perception.data.pairs",
    "read_lfw_pairs": "face_perception.data.pairs",
    "write_lfw_pairs": "face_perception.data.pairs",
    "VerificationBin": "face_perception.data.verification_bin",
    "find_verification_bins": "face_perception.data.verification_bin",
    "read_verification_bin": "face_perception.data.verification_bin",
    "write_verification_bin": "face_perception.data.verification_bin",
    "RecordIODataset": "face_perception.data.recordio",
    "write_recordio_dataset": "face_perception.data.recordio",
    "read_landmark_list": "face_perception.data.landmarks",
    "read_vggface2_landmarks": "face_perception.data.landmarks",
    "FaceList": "face_perception.data.vggface2",
    "read_vggface2_list": "face_perception.data.vggface2",
}
__all__ = ["DatasetError", *_EXPORTS]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
