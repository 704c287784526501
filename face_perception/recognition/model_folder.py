"""The recognition model folder, written and read here only (format: ``recognition.model_meta``).

Writers: training (``recognition/training``), ``face-perception model import``, the dlib
conversion (``recognition/pretrained.py``) and ``FaceRecognitionLearner.save``, all through
:func:`write_model_folder`. Readers: the ``Embedder``, ``FaceRecognitionLearner.load``, training
from a saved backbone and the pretrained cache check, all through :func:`read_model_folder` (or
:func:`verified_file` / :func:`load_backbone` on its metadata). Every model file is written
atomically and ``backbone.json``, naming the files' sha256, last, so a half-written folder never
reads as valid; a file that is missing, truncated or altered is refused naming it.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from face_perception.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    load_torch_file,
    sha256_file,
)
from face_perception.recognition.model_meta import (
    META_FILE,
    ONNX_FILE,
    WEIGHTS_FILE,
    ModelIntegrityError,
    ModelMeta,
    ModelMetaError,
)

PathLike = Union[str, os.PathLike]
HEAD_META, HEAD_WEIGHTS = "head.json", "head.pth"


# ------------------------------------------------------------------------------------ writing
def trained_meta(backbone: str, embedding_size: int, input_size, mean, std, color_order: str,
                 threshold: float = 0.3, layout: Optional[dict] = None,
                 source: str = "trained with face_perception (face-perception train)"
                 ) -> ModelMeta:
    """Metadata of a model trained on chips in the ArcFace template scaled to ``input_size``
    (the InsightFace layout); ``mean``/``std`` in 0..255 and the network's channel order;
    ``layout``: the backbone's unit options beyond the defaults (``mid_bn``,
    ``projection_shortcut`` of a network started from published weights), recorded so that
    the folder builds the same network again."""
    from face_perception.alignment import arcface_template

    w, h = int(input_size[0]), int(input_size[1])
    return ModelMeta(name=f"{backbone}_{embedding_size}", architecture=backbone,
                     embedding_size=embedding_size, input_size=(w, h),
                     template=arcface_template(w, h),
                     template_name="arcface_112" if (w, h) == (112, 112) else "arcface_scaled",
                     color_order=color_order, mean=tuple(mean), std=tuple(std),
                     threshold=float(np.clip(threshold, -1.0, 1.0)),
                     architecture_kwargs={"embedding_size": embedding_size,
                                          "input_size": [w, h], **(layout or {})},
                     source=source)


def state_bytes(module) -> bytes:
    """A module's state dict as ``torch.save`` bytes that depend on the weights only.

    ``torch.save`` to a file names the archive's records after the file; written to a temporary
    file with a random name, equal weights would give different bytes, checksums and model
    names (and refuse each other's galleries). A fixed in-memory name avoids that."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buffer)
    return buffer.getvalue()


def content_name(name: str, sha256: str) -> str:
    """``name`` with the first 8 hex digits of ``sha256`` as its suffix (replacing an earlier
    one): galleries are tagged with the model name, so weights of their own get a name of
    their own and a gallery made with other weights is refused."""
    base = name.rsplit("_", 1)[0] if _has_digest(name) else name
    return f"{base}_{sha256[:8]}"


def write_model_folder(folder: PathLike, backbone, meta: ModelMeta, head=None,
                       head_name: str = "", classes: Sequence[str] = (), *,
                       onnx: Optional[Union[bytes, PathLike]] = None,
                       keep_name: bool = False) -> Path:
    """Write a model folder: ``backbone`` (a torch module, or None for an ONNX graph kept as it
    is) as backbone.pth, ``onnx`` (the graph's bytes, or the path of an ONNX file to copy; one
    already at ``folder/backbone.onnx`` stays) as backbone.onnx, then backbone.json naming
    their sha256, then the classifier head (head.pth + head.json) when given.

    Each file is written atomically and the JSON last. ``meta`` is updated in place: its file
    fields, and its name, which gets the checksum's first 8 hex digits of the weights (of the
    graph when there are none) unless ``keep_name`` (a name galleries already use for these
    weights: ``dlib_resnet``, a loaded folder's). Returns the folder."""
    if backbone is None and onnx is None:
        raise ValueError(f"{folder}: a model folder needs torch weights or an ONNX graph")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta.weights_file, meta.weights_sha256 = None, None
    if backbone is not None:
        weights = folder / WEIGHTS_FILE
        atomic_write_bytes(weights, state_bytes(backbone))
        meta.weights_file, meta.weights_sha256 = WEIGHTS_FILE, sha256_file(weights)
    meta.onnx_file, meta.onnx_sha256 = None, None
    if onnx is not None:
        graph = folder / ONNX_FILE
        if isinstance(onnx, (bytes, bytearray)):
            atomic_write_bytes(graph, bytes(onnx))
        elif Path(onnx).resolve() != graph.resolve():
            with atomic_path(graph) as tmp:
                shutil.copyfile(onnx, tmp)
        meta.onnx_file, meta.onnx_sha256 = ONNX_FILE, sha256_file(graph)
    if not keep_name:
        meta.name = content_name(meta.name, meta.weights_sha256 or meta.onnx_sha256)
    meta.save(folder)
    if head is not None:
        save_head(folder, head, head_name, classes)
    return folder


def write_onnx_model_folder(folder: PathLike, onnx_bytes: bytes, meta: ModelMeta) -> Path:
    """A model folder holding only an ONNX graph (an imported recognizer kept as it is):
    ``weights_file`` null, the name suffixed with the graph's checksum."""
    return write_model_folder(folder, None, meta, onnx=onnx_bytes)


def save_head(folder: PathLike, head, head_name: str, classes: Sequence[str]) -> None:
    """head.pth and head.json: the head's name, classes, embedding size and the settings it
    was built with (scale, margins, ...), so that ``load_head`` rebuilds the same head."""
    from face_perception.recognition.heads import current_settings

    folder = Path(folder)
    atomic_write_bytes(folder / HEAD_WEIGHTS, state_bytes(head))
    info = {"network_head": head_name, "classes": list(classes),
            "in_features": int(head.in_features), "settings": current_settings(head),
            "sha256": sha256_file(folder / HEAD_WEIGHTS)}
    atomic_write_text(folder / HEAD_META, json.dumps(info, indent=2) + "\n")


# ------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class ModelFolder:
    """A model folder whose backbone.json has been read and checked; its model files are
    checked against their recorded sha256 when used."""

    folder: Path
    meta: ModelMeta

    @property
    def has_onnx(self) -> bool:
        """Whether the folder holds its recorded ONNX graph (checked when opened)."""
        return bool(self.meta.onnx_file) and (self.folder / self.meta.onnx_file).is_file()

    def weights_path(self) -> Path:
        return verified_file(self.folder, self.meta, "weights")

    def onnx_path(self) -> Path:
        return verified_file(self.folder, self.meta, "onnx")

    def load_backbone(self):
        return load_backbone(self.folder, self.meta)

    def load_head(self):
        return load_head(self.folder)

    def verify(self) -> None:
        """Check every model file backbone.json records (FileNotFoundError or
        ModelIntegrityError naming the file)."""
        for which, name in (("weights", self.meta.weights_file), ("onnx", self.meta.onnx_file)):
            if name:
                verified_file(self.folder, self.meta, which)


def read_model_folder(folder: PathLike) -> ModelFolder:
    """Read and check ``folder``'s backbone.json (``folder`` may also be that file).

    FileNotFoundError for a missing folder or metadata, ModelMetaError for metadata that is
    unreadable, inconsistent or records no model file."""
    path = Path(folder)
    if path.is_file() and path.name == META_FILE:
        path = path.parent
    if not path.is_dir():
        raise FileNotFoundError(f"model folder not found: {path}")
    meta = ModelMeta.load(path)
    if not meta.weights_file and not meta.onnx_file:
        raise ModelMetaError(f"{path / META_FILE}: records no model file (weights_file and "
                             "onnx_file are both null)")
    return ModelFolder(path, meta)


def verified_file(folder: PathLike, meta: ModelMeta, which: str = "weights") -> Path:
    """The path of the model folder's ``which`` file ("weights" or "onnx"), after checking it.

    The one checksum rule for model folders: the file's sha256 must be recorded in backbone.json
    (``weights_sha256`` / ``onnx_sha256``; a folder written by this package always records it)
    and must match the file. Raises FileNotFoundError for a missing file and ModelIntegrityError
    naming the file otherwise.
    """
    if which not in ("weights", "onnx"):
        raise ValueError(f"which must be 'weights' or 'onnx', got {which!r}")
    name, expected = ((meta.weights_file, meta.weights_sha256) if which == "weights"
                      else (meta.onnx_file, meta.onnx_sha256))
    folder = Path(folder)
    path = folder / (name or "")
    if not name or not path.is_file():
        raise FileNotFoundError(f"model {which} file not found: {path}")
    if not expected:
        raise ModelIntegrityError(f"{folder / META_FILE} records no {which}_sha256 for {path}; "
                                  "refusing unverifiable weights (save the model with this "
                                  "package, or record the file's sha256 there)")
    digest = sha256_file(path)
    if digest != expected.lower():
        raise ModelIntegrityError(f"{path} does not match the sha256 in {folder / META_FILE} "
                                  f"(expected {expected}, got {digest}): the file is "
                                  "truncated, altered or belongs to another model")
    return path


def build_backbone(meta: ModelMeta):
    """An untrained torch module of ``meta.architecture`` with the meta's geometry."""
    if meta.architecture == "dlib_resnet":
        from face_perception.recognition.backbones.dlib_resnet import DlibResNet

        return DlibResNet(embedding_size=meta.embedding_size, input_size=meta.input_size[0])
    try:
        from face_perception.recognition.backbones import get_model
    except ImportError as exc:
        raise ValueError(f"architecture {meta.architecture!r} needs the backbone registry "
                         f"(face_perception.recognition.backbones): {exc}") from None
    kwargs = {"embedding_size": meta.embedding_size, "input_size": tuple(meta.input_size)}
    kwargs.update(meta.architecture_kwargs)
    return get_model(meta.architecture, **kwargs)


def load_backbone(folder: PathLike, meta: ModelMeta):
    """The model folder's torch network (eval mode, CPU), after its weights' checksum check;
    loaded with ``weights_only=True``."""
    if not meta.weights_file:
        raise ValueError(f"model {meta.name!r} in {folder} is an ONNX graph without torch "
                         "weights (an imported ONNX recognizer): use backend 'onnx'")
    weights = verified_file(folder, meta, "weights")
    model = build_backbone(meta)
    state = load_torch_file(weights, ValueError, "a backbone state dict")
    if isinstance(state, dict) and "state_dict" in state and isinstance(
            state["state_dict"], dict):
        state = state["state_dict"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"{weights} does not fit architecture "
                         f"{meta.architecture!r}: {exc}") from None
    return model.eval()


def load_head(folder: PathLike):
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
        raise ValueError(f"{weights} does not match the sha256 in {meta_path}: the file is "
                         "truncated or altered")
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
