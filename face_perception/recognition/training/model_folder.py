"""The trained model on disk: a model folder (backbone.json + backbone.pth, see
``recognition.model_meta``) that every model consumer accepts, plus the classifier head
(head.json + head.pth) that ``infer`` in mode ``full`` uses.

Also the writer of imported models (``recognition/model_import``): torch imports go through
:func:`write_model_folder`, ONNX graphs kept as they are through
:func:`write_onnx_model_folder`. (Issue 23: the dlib conversion in ``pretrained.py`` still
writes its own folder; it should move here too.)"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from face_perception.files import (
    atomic_write_bytes,
    atomic_write_text,
    load_torch_file,
    sha256_file,
)
from face_perception.recognition.model_meta import ONNX_FILE, WEIGHTS_FILE, ModelMeta

HEAD_META, HEAD_WEIGHTS = "head.json", "head.pth"


def trained_meta(backbone: str, embedding_size: int, input_size, mean, std, color_order: str,
                 threshold: float = 0.3, layout: Optional[dict] = None) -> ModelMeta:
    """Metadata of a model trained on chips in the ArcFace template scaled to ``input_size``
    (the InsightFace layout); ``mean``/``std`` in 0..255 and the network's channel order;
    ``layout``: the backbone's unit options beyond the defaults (``mid_bn``,
    ``projection_shortcut`` of a network started from published weights), recorded so that
    the folder builds the same network again."""
    from face_perception.alignment import ARCFACE_TEMPLATE_112

    w, h = int(input_size[0]), int(input_size[1])
    template = ARCFACE_TEMPLATE_112 * np.array([w / 112.0, h / 112.0], np.float32)
    return ModelMeta(name=f"{backbone}_{embedding_size}", architecture=backbone,
                     embedding_size=embedding_size, input_size=(w, h), template=template,
                     template_name="arcface_112" if (w, h) == (112, 112) else "arcface_scaled",
                     color_order=color_order, mean=tuple(mean), std=tuple(std),
                     threshold=float(np.clip(threshold, -1.0, 1.0)),
                     architecture_kwargs={"embedding_size": embedding_size,
                                          "input_size": [w, h], **(layout or {})},
                     source="trained with face_perception (face-perception train)")


def write_model_folder(folder: Union[str, os.PathLike], backbone: torch.nn.Module,
                       meta: ModelMeta, head: Optional[torch.nn.Module] = None,
                       head_name: str = "", classes: Sequence[str] = ()) -> Path:
    """Write weights (atomically), then backbone.json naming their sha256; the model name
    gets the checksum's first 8 hex digits, so galleries of other weights are refused."""
    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    atomic_write_bytes(weights, state_bytes(backbone))
    meta.weights_file = WEIGHTS_FILE
    meta.weights_sha256 = sha256_file(weights)
    base = meta.name.rsplit("_", 1)[0] if _has_digest(meta.name) else meta.name
    meta.name = f"{base}_{meta.weights_sha256[:8]}"
    meta.onnx_file, meta.onnx_sha256 = None, None
    meta.save(folder)
    if head is not None:
        save_head(folder, head, head_name, classes)
    return folder


def state_bytes(module: torch.nn.Module) -> bytes:
    """A module's state dict as ``torch.save`` bytes that depend on the weights only.

    ``torch.save`` to a file names the archive's records after the file; written to a temporary
    file with a random name, equal weights would give different bytes, checksums and model
    names (and refuse each other's galleries). A fixed in-memory name avoids that."""
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def write_onnx_model_folder(folder: Union[str, os.PathLike], onnx_bytes: bytes,
                            meta: ModelMeta) -> Path:
    """A model folder holding only an ONNX graph (an imported recognizer kept as it is): the
    graph is written atomically as backbone.onnx, then backbone.json naming its sha256 (no
    torch weights: ``weights_file`` null); the name gets the checksum's first 8 hex digits, as
    in :func:`write_model_folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    graph = folder / ONNX_FILE
    atomic_write_bytes(graph, onnx_bytes)
    meta.weights_file, meta.weights_sha256 = None, None
    meta.onnx_file, meta.onnx_sha256 = ONNX_FILE, sha256_file(graph)
    base = meta.name.rsplit("_", 1)[0] if _has_digest(meta.name) else meta.name
    meta.name = f"{base}_{meta.onnx_sha256[:8]}"
    meta.save(folder)
    return folder


def save_head(folder: Union[str, os.PathLike], head: torch.nn.Module, head_name: str,
              classes: Sequence[str]) -> None:
    """head.pth and head.json: the head's name, classes, embedding size and the settings it
    was built with (scale, margins, ...), so that ``load_head`` rebuilds the same head."""
    from face_perception.recognition.heads import current_settings

    folder = Path(folder)
    atomic_write_bytes(folder / HEAD_WEIGHTS, state_bytes(head))
    info = {"network_head": head_name, "classes": list(classes),
            "in_features": int(head.in_features), "settings": current_settings(head),
            "sha256": sha256_file(folder / HEAD_WEIGHTS)}
    atomic_write_text(folder / HEAD_META, json.dumps(info, indent=2) + "\n")


def load_head(folder: Union[str, os.PathLike]):
    """(head module in eval mode, class names) from head.json + head.pth, sha256-checked."""
    from face_perception.recognition.heads import get_head

    folder = Path(folder)
    meta_path, weights = folder / HEAD_META, folder / HEAD_WEIGHTS
    if not meta_path.is_file() or not weights.is_file():
        raise FileNotFoundError(f"{folder} has no classifier head ({HEAD_META} + "
                                f"{HEAD_WEIGHTS}); mode 'full' inference needs a model trained "
                                "in mode 'full'")
    try:
        info = json.loads(meta_path.read_text())
        name, classes, dim = info["network_head"], list(info["classes"]), info["in_features"]
        settings = dict(info.get("settings", {}))  # folders written before settings: defaults
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{meta_path}: not a head description ({exc})") from None
    if sha256_file(weights) != info.get("sha256"):
        raise ValueError(f"{weights} does not match the sha256 in {meta_path}")
    state = load_torch_file(weights, ValueError, "a head state dict")
    try:
        head = get_head(name, dim, len(classes), **settings)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{meta_path}: settings {settings} do not build head {name!r} "
                         f"({exc})") from None
    head.load_state_dict(state)
    return head.eval(), classes


def _has_digest(name: str) -> bool:
    tail = name.rsplit("_", 1)[-1]
    return len(tail) == 8 and all(c in "0123456789abcdef" for c in tail)
