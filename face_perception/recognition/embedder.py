"""Embedder: aligned face chips -> L2-normalised embeddings, with ONNX Runtime or PyTorch.

Everything model-specific (chip size, landmark template, colour order, mean/std) comes from
the model folder's :class:`ModelMeta`, so one class serves dlib's ResNet (150x150, RGB,
(x - avg) / 256) and ArcFace-style IR/ResNet/MobileFaceNet models (112x112, RGB,
(x - 127.5) / 127.5) alike. Chips and images enter as BGR uint8 (OpenCV / ROS bgr8).
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.alignment import align_to_template
from face_perception.devices import BACKENDS
from face_perception.files import cache_dir
from face_perception.recognition.model_folder import read_model_folder
from face_perception.recognition.network_input import NetworkInput
from face_perception.recognition.pretrained import export_embedding_onnx, resolve_model
from face_perception.types import Face

log = logging.getLogger(__name__)


class Embedder:
    """Face embeddings from a model folder or a pretrained name.

    ``model``: ``'dlib_resnet'`` (converted from dlib's .dat on first use) or a path to a model
    folder (see ``model_meta``). ``backend``: ``'onnx'`` (ONNX Runtime; exported and cached on
    first use if the folder has no ONNX file), ``'onnx-int8'`` (the guarded int8 graph: the
    one ``face-perception quantize`` recorded in the model folder, else one calibrated on the
    ``calibration`` folder's faces, default the shipped photos, built once and cached; refused
    with the guard's figures when it differs from fp32, see recognition/int8.py) or
    ``'torch'``. ``device``: ``'cpu'`` or ``'cuda'`` (falls back to CPU with a warning when
    CUDA is unavailable). ``batch_size``: chips per forward pass; larger inputs are chunked.
    ``num_threads``: intra-op threads (None: the library default, every core; the ROS nodes
    pass a share, see face_perception/onnx/session.py). ``threads`` is its older name.
    ``provider_options``: onnxruntime execution-provider options for 'cuda' (TensorRT fp16,
    engine cache; face_perception/onnx/session.py). ``calibration``: see 'onnx-int8'.
    ``flip``: test-time augmentation: each chip and its mirror image are embedded and the two
    embeddings averaged (twice the compute; measured in docs/open_set.md#flip). Settable later
    through the ``flip`` attribute.
    """

    def __init__(self, model: Union[str, os.PathLike] = "dlib_resnet", backend: str = "onnx",
                 device: str = "cpu", batch_size: int = 32, threads: Optional[int] = None,
                 num_threads: Optional[int] = None,
                 calibration: Optional[Union[str, os.PathLike]] = None,
                 provider_options: Optional[dict] = None, flip: bool = False):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._files = read_model_folder(resolve_model(model))
        self.folder, self.meta = self._files.folder, self._files.meta
        self.backend = backend
        self.batch_size = int(batch_size)
        self.flip = bool(flip)
        self.threads = num_threads if num_threads is not None else threads
        self.calibration = calibration
        self.provider_options = dict(provider_options or {})
        w, h = self.meta.input_size
        self._input = NetworkInput.from_meta(self.meta)
        self._shape = (h, w, 3)
        if backend.startswith("onnx"):
            self.device = self._init_onnx(device)
        else:
            self.device = self._init_torch(device)

    # -- backends -----------------------------------------------------------------------------
    def _load_torch_model(self):
        return self._files.load_backbone()

    def _init_torch(self, device: str) -> str:
        import torch

        from face_perception.devices import torch_device
        from face_perception.threads import set_torch_threads

        device = torch_device(device, stacklevel=4)
        set_torch_threads(self.threads)
        self._torch = torch
        self._model = self._load_torch_model().to(device)
        return device

    def _onnx_path(self) -> Path:
        if self._files.has_onnx:
            return self._files.onnx_path()
        # No export in the folder: export once into the cache, keyed by the weights' checksum
        # (verified first, so the cache entry belongs to these very weights).
        self._files.weights_path()
        key = self.meta.weights_sha256.lower()
        path = cache_dir("recognition") / "onnx" / f"{self.meta.name}-{key[:16]}.onnx"
        if not path.is_file():
            export_embedding_onnx(self._load_torch_model(), path, self.meta.input_size)
        return path

    def _init_onnx(self, device: str) -> str:
        from face_perception.onnx.session import onnx_providers, session_options

        providers = onnx_providers(device, self.provider_options)
        if device.startswith("cuda") and len(providers) == 1:
            device = "cpu"
        self._session_options = session_options(self.threads)
        self._providers = providers
        self.onnx_path = self._onnx_path()
        self._open_session(self.onnx_path)
        if self.backend == "onnx-int8":
            self.onnx_path = self._int8_path()
            self._open_session(self.onnx_path)
        if not any(p in self._session.get_providers() for p in
                   ("CUDAExecutionProvider", "TensorrtExecutionProvider")):
            device = "cpu"
        return device

    def _open_session(self, path: Path) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(path), self._session_options,
                                             providers=self._providers)
        inp = self._session.get_inputs()[0]
        self.input_name = inp.name
        shape = inp.shape
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ValueError(f"{path}: expected an N x 3 x H x W input, got {shape}")

    def _int8_path(self) -> Path:
        """The guarded int8 graph of the fp32 graph now loaded (see the class docstring)."""
        from face_perception.onnx.quantization import calibration_images, recorded_int8
        from face_perception.recognition.int8 import int8_onnx_for

        if not self.calibration:
            recorded = recorded_int8(self.folder, self.onnx_path)
            if recorded is not None:
                return recorded
        return int8_onnx_for(self, calibration_images(self.calibration))

    # -- public API ---------------------------------------------------------------------------
    @property
    def embedding_size(self) -> int:
        return self.meta.embedding_size

    def align(self, image_bgr: np.ndarray, landmarks) -> np.ndarray:
        """The model's chip (HxWx3 BGR uint8) for a face with 5 ``landmarks`` in ``image_bgr``."""
        return align_to_template(image_bgr, landmarks, self.meta.template, self.meta.input_size,
                                 fit=self.meta.template_fit)

    def _stack(self, chips_bgr) -> np.ndarray:
        if isinstance(chips_bgr, np.ndarray):
            arr = chips_bgr[None] if chips_bgr.ndim == 3 else chips_bgr
        elif isinstance(chips_bgr, Sequence) and not isinstance(chips_bgr, (str, bytes)):
            if len(chips_bgr) == 0:
                return np.zeros((0,) + self._shape, np.uint8)
            for i, c in enumerate(chips_bgr):
                if not isinstance(c, np.ndarray) or c.shape != self._shape:
                    raise ValueError(f"chip {i} has shape {getattr(c, 'shape', type(c))}, "
                                     f"model {self.meta.name!r} needs {self._shape}")
            arr = np.stack(chips_bgr)
        else:
            raise ValueError(f"chips must be an ndarray or a list of ndarrays, got "
                             f"{type(chips_bgr).__name__}")
        if arr.ndim != 4 or arr.shape[1:] != self._shape:
            raise ValueError(f"chips have shape {arr.shape}, model {self.meta.name!r} needs "
                             f"N x {self._shape[0]} x {self._shape[1]} x 3 (BGR)")
        if arr.dtype != np.uint8:
            raise ValueError(f"chips must be uint8 BGR, got {arr.dtype}")
        return arr

    def preprocess(self, chips_bgr: np.ndarray) -> np.ndarray:
        """N x H x W x 3 BGR uint8 -> N x 3 x H x W float32 network input (colour order and
        normalisation from the metadata; ``recognition.network_input``)."""
        return self._input(chips_bgr)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        if self.backend != "torch":
            return self._session.run(None, {self.input_name: x})[0]
        torch = self._torch
        with torch.inference_mode():
            return self._model(torch.from_numpy(x).to(self.device)).float().cpu().numpy()

    def embed_raw(self, chips_bgr) -> np.ndarray:
        """The network's raw (un-normalised) output for the chips, (N, D) float32."""
        arr = self._stack(chips_bgr)
        out = np.zeros((len(arr), self.meta.embedding_size), np.float32)
        for start in range(0, len(arr), self.batch_size):
            chunk = self.preprocess(arr[start:start + self.batch_size])
            y = np.asarray(self._forward(chunk), dtype=np.float32).reshape(len(chunk), -1)
            if y.shape[1] != self.meta.embedding_size:
                raise ValueError(f"model {self.meta.name!r} produced {y.shape[1]}-d output, "
                                 f"its metadata says {self.meta.embedding_size}")
            out[start:start + len(chunk)] = y
        return out

    def embed_chips(self, chips_bgr) -> np.ndarray:
        """L2-normalised embeddings (N, D) float32 of aligned chips (N x H x W x 3 BGR uint8
        array or list of H x W x 3 chips)."""
        if self.flip:
            chips = np.asarray(chips_bgr)
            both = _unit(self.embed_raw(np.concatenate([chips, chips[:, :, ::-1]])))
            return _unit(both[:len(chips)] + both[len(chips):])
        return _unit(self.embed_raw(chips_bgr))

    def embed_faces(self, image_bgr: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        """Align every face (its landmarks are needed) and embed them in batched passes."""
        chips = []
        for i, face in enumerate(faces):
            if face.landmarks is None:
                raise ValueError(f"face {i} (box {face.box.tolist()}) has no landmarks; run a "
                                 "landmark-producing detector or use Recognizer, which finds "
                                 "them inside the box")
            chips.append(self.align(image_bgr, face.landmarks))
        if not chips:
            return np.zeros((0, self.meta.embedding_size), np.float32)
        return self.embed_chips(np.stack(chips))

    def similarity(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity matrix of two sets of L2-normalised embeddings."""
        return np.asarray(a, np.float32) @ np.asarray(b, np.float32).T

    def __repr__(self) -> str:
        return (f"Embedder(model={self.meta.name!r}, backend={self.backend!r}, "
                f"device={self.device!r}, embedding_size={self.meta.embedding_size})")


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
