"""The detector model folder, one convention for every consumer: ``<name>.pth`` (state dict),
``<name>.json`` (metadata with the sha256 of every file) and ``<name>.onnx`` once optimized.

Written by ``face-perception detector-train`` and ``RetinaFaceLearner.save``/``download``; read by
``Detector(model_path=...)`` (hence ``detect --model`` and the node's ``model_path``) and by
``RetinaFaceLearner.load`` (hence ``detector-eval --model``). ``resolve_model_path`` also takes
a bare ``.onnx`` or ``.pth`` file.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from face_perception.detection.config import BGR_MEAN, get_config
from face_perception.detection.weights import WeightsError, load_verified, normalize_checkpoint
from face_perception.files import (
    atomic_write_bytes,
    atomic_write_text,
    sha256_bytes,
    sha256_file,
)

BACKBONES = ("resnet", "mnet")
METADATA_VERSION = 1

PathLike = Union[str, os.PathLike]


class ModelFolderError(WeightsError):
    """A model folder whose metadata is missing fields, names unknown things or mismatches."""


def torch_bytes(obj) -> bytes:
    """``torch.save`` of ``obj`` into memory (to hash it before it is written)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def write_model_folder(folder: PathLike, state_dict: dict, *, backbone: str,
                       training_image_size: int, epochs_trained: int,
                       optimizer_info: Optional[dict] = None, onnx_bytes: Optional[bytes] = None,
                       source: Optional[str] = None) -> Path:
    """Write ``folder`` with ``<name>.pth``, ``<name>.onnx`` (when given) and ``<name>.json``;
    ``<name>`` is the folder's base name, as in the seed. The metadata is written last, so a
    folder is only valid once all its files are complete. Returns the folder."""
    folder = Path(folder)
    name = folder.name or "retinaface"
    folder.mkdir(parents=True, exist_ok=True)
    data = torch_bytes({k: v.detach().cpu() for k, v in state_dict.items()})
    weights_name = f"{name}.pth"
    atomic_write_bytes(folder / weights_name, data)
    cfg = get_config(backbone)
    meta = {
        "model_paths": [weights_name],
        "framework": "pytorch",
        "format": "pth",
        "architecture": "RetinaFace",
        "backbone": backbone,
        "has_data": False,
        "inference_params": {},
        "optimized": False,
        "optimizer_info": dict(optimizer_info or {}),
        "input": {"color_order": "bgr", "mean": list(BGR_MEAN),
                  "layout": "NCHW float32, image minus mean"},
        "priors": {"min_sizes": cfg["min_sizes"], "steps": cfg["steps"],
                   "variance": cfg["variance"]},
        "training_image_size": int(training_image_size),
        "epochs_trained": int(epochs_trained),
        "sha256": {weights_name: sha256_bytes(data)},
        "name": name,
        "version": METADATA_VERSION,
    }
    if onnx_bytes is not None:
        onnx_name = f"{name}.onnx"
        atomic_write_bytes(folder / onnx_name, onnx_bytes)
        meta["model_paths"].append(onnx_name)
        meta["sha256"][onnx_name] = sha256_bytes(onnx_bytes)
        meta["optimized"] = True
        meta["format"] = "pth+onnx"
    if source is not None:
        meta["source"] = source
    atomic_write_text(folder / f"{name}.json", json.dumps(meta, indent=2) + "\n")
    return folder


@dataclass(frozen=True)
class ModelFolder:
    """A model folder whose metadata has been read and checked (files are hashed on use)."""

    folder: Path
    meta_path: Path
    meta: dict

    @property
    def backbone(self) -> str:
        return self.meta["backbone"]

    @property
    def weights_path(self) -> Path:
        return self.folder / self._listed(".pth")

    @property
    def onnx_path(self) -> Optional[Path]:
        name = self._listed(".onnx", required=False)
        return self.folder / name if name else None

    def state_dict(self) -> dict:
        """The ``.pth`` weights after their sha256 check, loaded with ``weights_only=True``."""
        return normalize_checkpoint(load_verified(self.weights_path,
                                                  self._sha256(self.weights_path.name)))

    def onnx_bytes(self) -> bytes:
        """The ``.onnx`` model's bytes after their sha256 check (the bytes that were checked
        are the bytes used: nothing can change the file in between)."""
        path = self.onnx_path
        if path is None:
            raise ModelFolderError(f"{self.meta_path}: no .onnx model listed")
        data = path.read_bytes()
        if sha256_bytes(data) != self._sha256(path.name):
            raise ModelFolderError(f"checksum mismatch for {path}: truncated or modified")
        return data

    def check_weights(self) -> Path:
        """Verify the ``.pth`` file's sha256 without loading it; returns its path."""
        path = self.weights_path
        if sha256_file(path) != self._sha256(path.name):
            raise ModelFolderError(f"checksum mismatch for {path}: truncated or modified")
        return path

    def _listed(self, suffix: str, required: bool = True) -> Optional[str]:
        names = [p for p in self.meta["model_paths"] if p.endswith(suffix)]
        if not names:
            if required:
                raise ModelFolderError(f"{self.meta_path}: no {suffix} weights listed")
            return None
        return names[0]

    def _sha256(self, name: str) -> str:
        digest = self.meta["sha256"].get(name)
        if not digest:
            raise ModelFolderError(f"{self.meta_path}: no sha256 for {name}")
        return digest


def read_model_folder(folder: PathLike) -> ModelFolder:
    """Read and check the metadata of a model folder (every listed file must exist and have a
    sha256); FileNotFoundError or ModelFolderError name the file and the fault."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    meta_path = folder / f"{folder.name}.json"
    if not meta_path.is_file():
        # A renamed folder keeps its files' names: accept its only metadata file.
        candidates = sorted(folder.glob("*.json"))
        if len(candidates) != 1:
            raise FileNotFoundError(
                f"no model metadata {meta_path.name} in {folder} (found "
                f"{[c.name for c in candidates]}); a model folder is written by "
                "`face-perception detector-train` or RetinaFaceLearner.save()")
        meta_path = candidates[0]
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFolderError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ModelFolderError(f"{meta_path}: not a model metadata object")
    for key, kind in (("model_paths", list), ("backbone", str), ("sha256", dict)):
        if key not in meta:
            raise ModelFolderError(f"{meta_path}: missing field {key!r}")
        if not isinstance(meta[key], kind):
            raise ModelFolderError(f"{meta_path}: field {key!r} must be a {kind.__name__}")
    if meta["backbone"] not in BACKBONES:
        raise ModelFolderError(f"{meta_path}: unknown backbone {meta['backbone']!r}")
    model = ModelFolder(folder, meta_path, meta)
    for name in meta["model_paths"]:
        if not isinstance(name, str) or name != Path(name).name:
            raise ModelFolderError(f"{meta_path}: model_paths must name files in the folder, "
                                   f"got {name!r}")
        if not (folder / name).is_file():
            raise FileNotFoundError(f"model file listed in {meta_path} not found: "
                                    f"{folder / name}")
        model._sha256(name)
    model._listed(".pth")
    return model


@dataclass(frozen=True)
class DetectorModel:
    """What a detector ``model_path`` names: a model folder, an ``.onnx`` file or a ``.pth``
    state dict. ``backbone`` is the folder's (None for a bare file: the caller's choice)."""

    path: Path
    folder: Optional[ModelFolder] = None

    @property
    def backbone(self) -> Optional[str]:
        return self.folder.backbone if self.folder is not None else None

    @property
    def is_onnx_file(self) -> bool:
        return self.folder is None and self.path.suffix.lower() == ".onnx"


def resolve_model_path(path: PathLike) -> DetectorModel:
    """Check that ``path`` is a usable detector model (folder metadata read and checked)."""
    path = Path(path)
    if path.is_dir():
        return DetectorModel(path, read_model_folder(path))
    if not path.is_file():
        raise FileNotFoundError(
            f"detector model not found: {path} (expected a model folder written by "
            "`face-perception detector-train` / RetinaFaceLearner.save(), an .onnx file or a "
            ".pth state dict)")
    return DetectorModel(path)
