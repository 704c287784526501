"""RetinaFace face detection: network, priors, box maths, pretrained weights and ``Detector``.

``Detector`` is imported lazily so that ``import face_perception.detection.box_utils`` (NumPy
only) never pulls in onnxruntime or torch.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "Detector": "face_perception.detection.detector",
    "RetinaFace": "face_perception.detection.retinaface",
    "get_config": "face_perception.detection.config",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
