"""Face recognition core: dlib/ArcFace-style embedding models, the Embedder and the Recognizer.

Exports are lazy so that ``import face_perception.recognition`` does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Embedder": "face_perception.recognition.embedder",
    "ModelMeta": "face_perception.recognition.model_meta",
    "Recognizer": "face_perception.recognition.recognizer",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
