"""A published backbone to train from (``init_from`` of docs/training.md): the network an
arcface_torch ``.pth`` or AdaFace ``.ckpt`` holds, built as this package's IResNet in that
layout's unit variant and loaded with the file's weights, with the input the weights expect.

The same readers as ``face-perception model import``, so both paths map a file alike."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from face_perception.recognition.model_import.errors import ModelImportError

# init_from formats (TrainConfig's INIT_FORMATS) -> the layout their files hold
LAYOUT_OF_FORMAT = {"arcface-torch": "arcface_torch", "adaface": "adaface"}


@dataclass
class PublishedBackbone:
    """``model``: the backbone with the file's weights (eval mode). ``architecture_kwargs``:
    what builds the same network again (``get_model(architecture, **architecture_kwargs)``):
    embedding size, input size and the layout's unit options (``mid_bn``,
    ``projection_shortcut``), which a model folder must record. ``color_order``, ``mean``,
    ``std`` (0..255, network channel order): the input the weights were trained on."""

    model: object
    architecture: str
    embedding_size: int
    input_size: tuple
    color_order: str
    mean: tuple
    std: tuple
    architecture_kwargs: dict = field(default_factory=dict)


def published_backbone(path: Union[str, os.PathLike], fmt: str,
                       architecture: Optional[str] = None) -> PublishedBackbone:
    """Read ``path`` (format ``fmt``: arcface-torch or adaface); ``architecture``, when given,
    must be what the file holds. FileNotFoundError or ModelImportError name the file."""
    from face_perception.recognition.model_import.iresnet_layouts import LAYOUT_KWARGS

    if fmt not in LAYOUT_OF_FORMAT:
        raise ModelImportError(f"a backbone to train from must be one of "
                               f"{', '.join(LAYOUT_OF_FORMAT)}, got format {fmt!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"published {fmt} checkpoint not found: {path}")
    if fmt == "arcface-torch":
        from face_perception.recognition.model_import import arcface_torch as reader

        model, arch, dim = reader.read_arcface_torch(path)
    else:
        from face_perception.recognition.model_import import adaface as reader

        model, arch, dim = reader.read_adaface(path)
    if architecture is not None and architecture != arch:
        raise ModelImportError(f"{path} holds an {arch} (from its layers), but the run trains "
                               f"backbone {architecture!r}: set backbone: {arch}")
    size = (112, 112)  # both readers accept 112x112 networks only (512 x 7 x 7 features)
    kwargs = {"embedding_size": dim, "input_size": list(size),
              **LAYOUT_KWARGS[LAYOUT_OF_FORMAT[fmt]]}
    return PublishedBackbone(model=model, architecture=arch, embedding_size=dim,
                             input_size=size, color_order=reader.COLOR_ORDER,
                             mean=tuple(reader.MEAN), std=tuple(reader.STD),
                             architecture_kwargs=kwargs)
