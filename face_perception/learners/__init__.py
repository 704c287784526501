"""Seed-compatible learner API (OpenDR-style): RetinaFaceLearner and FaceRecognitionLearner.

Imported lazily so that ``import face_perception.learners`` stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "RetinaFaceLearner": "face_perception.learners.retinaface",
    "FaceRecognitionLearner": "face_perception.learners.face_recognition",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)
