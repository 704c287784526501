"""Import face recognizers trained elsewhere into model folders (``face-perception model
import``; docs/models.md).

``import_model(src, fmt, out)`` writes a model folder (``recognition/model_meta.py``) with the
source's template, colour order, normalisation, embedding size and a documented 1:1 threshold:

* ``insightface-onnx``: an InsightFace ONNX recognizer, kept as the folder's ONNX graph
* ``arcface-torch``: an arcface_torch iresnet ``.pth`` (r18, r34, r50, r100, r200)
* ``adaface``: an AdaFace ``.ckpt`` (IR-18/34/50/100, IR-SE-50)
* ``opendr``: a folder from OpenDR's ``FaceRecognitionLearner.save`` (IR / IR-SE 50/101/152;
  after ``optimize()`` its ONNX graph, any backbone)

Torch checkpoints are read with ``weights_only=True`` and loaded only when every key and shape
matches; anything else is refused with :class:`ModelImportError`. An imported model names
nobody until its gallery's open-set rule is calibrated (``face_perception/open_set.py``).

``published_backbone(src, fmt)`` reads an arcface-torch / adaface file the same way for
training (``init_from``): the network in its layout, weights loaded, and how it was fed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from face_perception.recognition.model_import.errors import ModelImportError
from face_perception.recognition.model_import.published import (
    PublishedBackbone,
    published_backbone,
)

FORMATS = ("insightface-onnx", "arcface-torch", "adaface", "opendr")

__all__ = ["FORMATS", "ModelImportError", "PublishedBackbone", "import_model",
           "published_backbone"]


def import_model(src: Union[str, os.PathLike], fmt: str, out: Union[str, os.PathLike],
                 name: Optional[str] = None, arch: Optional[str] = None,
                 threshold: Optional[float] = None) -> Path:
    """Convert ``src`` (format ``fmt``) into the model folder ``out`` and return it.

    name: the model's name (a checksum suffix is added; default from the source); arch: the
    architecture the file must hold (checked against its layers; torch formats only);
    threshold: the 1:1 cosine threshold to record instead of the documented default.
    """
    if fmt not in FORMATS:
        raise ModelImportError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if threshold is not None and not -1.0 <= float(threshold) <= 1.0:
        raise ModelImportError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    src = Path(src)
    if not src.exists():
        raise FileNotFoundError(f"model to import not found: {src}")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ModelImportError(f"{out} exists and is not an empty folder; choose a new --out")
    if fmt == "insightface-onnx":
        from face_perception.recognition.model_import.insightface_onnx import (
            import_insightface_onnx as run,
        )
    elif fmt == "arcface-torch":
        from face_perception.recognition.model_import.arcface_torch import (
            import_arcface_torch as run,
        )
    elif fmt == "adaface":
        from face_perception.recognition.model_import.adaface import import_adaface as run
    else:
        from face_perception.recognition.model_import.opendr import import_opendr as run
    return run(src, out, name=name, arch=arch, threshold=threshold)
