"""Metadata of an imported recognizer: ArcFace 112x112 geometry, the source's colour order and
normalisation, a documented 1:1 threshold, provenance, and no open-set rule until calibrated."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

from face_perception.files import sha256_file
from face_perception.recognition.model_meta import ModelMeta

# The 1:1 threshold written for models without a figure of their own: InsightFace's recognition
# demo (web-demos/src_recognition/main.py) calls two faces "the same person" at cosine
# similarity >= 0.28 (0.2-0.28 "likely", < 0.2 "not") for its ArcFace ONNX models. AdaFace and
# face.evoLVe/OpenDR models are margin-softmax networks on the same 112x112 chips; measure your
# own with `face-perception eval` and import with --threshold when it differs.
INSIGHTFACE_SAME_PERSON_COSINE = 0.28


def imported_meta(name: str, architecture: str, embedding_size: int, color_order: str,
                  mean, std, threshold: float, source_file: Union[str, os.PathLike],
                  fmt: str, license_note: str, architecture_kwargs: Optional[dict] = None
                  ) -> ModelMeta:
    """The ModelMeta of a model imported from ``source_file`` in format ``fmt``."""
    from face_perception.alignment import ARCFACE_TEMPLATE_112

    source_file = Path(source_file)
    return ModelMeta(name=name, architecture=architecture, embedding_size=int(embedding_size),
                     input_size=(112, 112), template=ARCFACE_TEMPLATE_112,
                     template_name="arcface_112", padding=None, template_fit="chip",
                     color_order=color_order, mean=tuple(mean), std=tuple(std),
                     threshold=float(threshold), version="imported-1",
                     source=f"{source_file.name} ({fmt}), imported by face-perception model "
                            "import",
                     license=license_note, source_sha256=sha256_file(source_file),
                     architecture_kwargs=dict(architecture_kwargs or {}),
                     needs_open_set_calibration=True)
