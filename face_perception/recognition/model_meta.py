"""Embedding-model metadata (``ModelMeta``) and the on-disk model folder format (written and
read by ``recognition.model_folder``).

A model folder holds one embedding network::

    my_model/
      backbone.json   ModelMeta as JSON (this module): geometry, colour, normalisation, ...
      backbone.pth    torch state dict (``torch.save(model.state_dict())``), loaded with
                      ``torch.load(..., weights_only=True)``; its sha256 is ``weights_sha256``
      backbone.onnx   optional ONNX export (input ``input`` N x 3 x H x W float32, output
                      ``embedding`` N x D); its sha256 is ``onnx_sha256``

``backbone.json`` fields (all JSON scalars/lists):

* ``format_version`` (int, currently 1) and ``version`` (the model's own version string)
* ``name``: the model id (galleries are tagged with it); ``architecture``: a backbone registry
  name (``dlib_resnet``, ``ir_50``, ``mobilefacenet``, ...); ``architecture_kwargs``: extra
  constructor arguments for that backbone (optional)
* ``embedding_size`` (D); ``input_size`` [width, height] of the chip in pixels
* ``template_name`` and ``template``: the 5 landmarks (x, y) in chip pixels, in the order left
  eye, right eye, nose tip, left mouth corner, right mouth corner (image left/right);
  ``padding``: dlib-style chip padding the template was made for (null when not applicable);
  ``template_fit``: "chip" (least squares measured in the chip, InsightFace) or "image"
  (measured in the image, dlib), see ``alignment.template_transform``
* ``color_order``: "rgb" or "bgr", the channel order the network expects
* ``mean``, ``std``: per channel, in 0..255 pixel units, in the network's channel order;
  the network input is ``(pixel - mean) / std``
* ``threshold``: cosine similarity of two L2-normalised embeddings above which they are
  the same person; ``distance_threshold``: the model's own metric threshold if it has one
  (dlib: 0.6 euclidean on raw descriptors), else null
* ``weights_file``, ``weights_sha256``, ``onnx_file``, ``onnx_sha256`` (null if absent); a
  model file is used only if its sha256 is recorded here and matches
  (``recognition.model_folder.verified_file``)
* ``source``, ``license``: provenance, free text; ``source_sha256``: sha256 of the file the
  weights were converted from (null if trained here)
* ``needs_open_set_calibration`` (optional, default false): true for models imported with
  ``face-perception model import`` (docs/models.md). Their ``threshold`` is a published 1:1
  figure, not an identification rule, so recognition names nobody with them until a gallery's
  open-set rule is calibrated (``face-perception gallery calibrate``) or a threshold is given
  explicitly (``face_perception/open_set.py``). An ONNX-only import has ``weights_file`` null.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.files import atomic_write_text

FORMAT_VERSION = 1
META_FILE = "backbone.json"
WEIGHTS_FILE = "backbone.pth"
ONNX_FILE = "backbone.onnx"


class ModelMetaError(ValueError):
    """A backbone.json that is missing, unreadable or inconsistent."""


class ModelIntegrityError(RuntimeError):
    """A model file whose sha256 is not recorded in its backbone.json or does not match it."""


@dataclass
class ModelMeta:
    """What an Embedder needs to know about a model: geometry, colour, normalisation, threshold.

    See the module docstring for every field's meaning and unit.
    """

    name: str
    architecture: str
    embedding_size: int
    input_size: tuple[int, int]
    template: np.ndarray
    template_name: str = "custom"
    padding: Optional[float] = None
    template_fit: str = "chip"
    color_order: str = "rgb"
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5)
    std: tuple[float, float, float] = (127.5, 127.5, 127.5)
    threshold: float = 0.3
    distance_threshold: Optional[float] = None
    weights_file: Optional[str] = WEIGHTS_FILE
    weights_sha256: Optional[str] = None
    onnx_file: Optional[str] = None
    onnx_sha256: Optional[str] = None
    source_sha256: Optional[str] = None
    version: str = "1"
    source: str = ""
    license: str = ""
    architecture_kwargs: dict = field(default_factory=dict)
    needs_open_set_calibration: bool = False
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.template = np.asarray(self.template, dtype=np.float32)
        self.input_size = tuple(int(v) for v in self.input_size)
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        self.embedding_size = int(self.embedding_size)
        self.threshold = float(self.threshold)
        self.validate()

    @property
    def model_id(self) -> str:
        return self.name

    @property
    def sha256(self) -> Optional[str]:
        """The weights' checksum (``weights_sha256``)."""
        return self.weights_sha256

    def validate(self) -> None:
        def bad(msg):
            raise ModelMetaError(f"model {self.name!r}: {msg}")

        if not isinstance(self.name, str) or not self.name:
            bad("name must be a non-empty string")
        if self.embedding_size <= 0:
            bad(f"embedding_size must be positive, got {self.embedding_size}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            bad(f"input_size must be (width, height) > 0, got {self.input_size}")
        if self.template.shape != (5, 2) or not np.all(np.isfinite(self.template)):
            bad(f"template must be 5x2 finite points, got shape {self.template.shape}")
        if self.template_fit not in ("chip", "image"):
            bad(f"template_fit must be 'chip' or 'image', got {self.template_fit!r}")
        if self.color_order not in ("rgb", "bgr"):
            bad(f"color_order must be 'rgb' or 'bgr', got {self.color_order!r}")
        if len(self.mean) != 3 or len(self.std) != 3:
            bad(f"mean and std need 3 values each, got {self.mean}, {self.std}")
        if any(not math.isfinite(s) or s <= 0 for s in self.std):
            bad(f"std values must be positive, got {self.std}")
        if not -1.0 <= self.threshold <= 1.0:
            bad(f"threshold is a cosine similarity in [-1, 1], got {self.threshold}")
        if not isinstance(self.needs_open_set_calibration, bool):
            bad("needs_open_set_calibration must be true or false, got "
                f"{self.needs_open_set_calibration!r}")
        if self.format_version > FORMAT_VERSION:
            bad(f"format_version {self.format_version} is newer than this package "
                f"understands ({FORMAT_VERSION})")

    # -- JSON ---------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = asdict(self)
        d["template"] = [[round(float(x), 6), round(float(y), 6)] for x, y in self.template]
        d["input_size"] = list(self.input_size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: dict, where: str = "backbone.json") -> ModelMeta:
        if not isinstance(data, dict):
            raise ModelMetaError(f"{where}: expected a JSON object, got {type(data).__name__}")
        known = set(cls.__dataclass_fields__)
        missing = {"name", "architecture", "embedding_size", "input_size", "template"} - set(data)
        if missing:
            raise ModelMetaError(f"{where}: missing fields {sorted(missing)}")
        unknown = set(data) - known
        if unknown:
            raise ModelMetaError(f"{where}: unknown fields {sorted(unknown)}")
        try:
            return cls(**data)
        except ModelMetaError as exc:
            raise ModelMetaError(f"{where}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise ModelMetaError(f"{where}: invalid value ({exc})") from None

    def save(self, folder: Union[str, os.PathLike]) -> Path:
        """Write ``backbone.json`` into ``folder`` atomically (temp file + rename)."""
        # World-readable whatever the umask: a model folder is meant to be shared.
        return atomic_write_text(Path(folder) / META_FILE,
                                 json.dumps(self.to_dict(), indent=2) + "\n", mode=0o644)

    @classmethod
    def load(cls, folder: Union[str, os.PathLike]) -> ModelMeta:
        """Read ``folder/backbone.json`` (``folder`` may also be the JSON file itself)."""
        path = Path(folder)
        if path.is_dir():
            path = path / META_FILE
        if not path.is_file():
            raise FileNotFoundError(f"model metadata not found: {path}")
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelMetaError(f"{path}: not readable JSON ({exc})") from None
        return cls.from_dict(data, where=str(path))

    # -- standard geometries ------------------------------------------------------------------
    @classmethod
    def arcface_112(cls, name: str, architecture: str, embedding_size: int = 512,
                    threshold: float = 0.3, **kw) -> ModelMeta:
        """Metadata for an ArcFace-style model on 112x112 chips (InsightFace convention:
        RGB, (pixel - 127.5) / 127.5). ``threshold`` should come from the model's own
        verification run (the eval picks the best-accuracy threshold)."""
        from face_perception.alignment import ARCFACE_TEMPLATE_112

        return cls(name=name, architecture=architecture, embedding_size=embedding_size,
                   input_size=(112, 112), template=ARCFACE_TEMPLATE_112,
                   template_name="arcface_112", padding=None, color_order="rgb",
                   mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5),
                   threshold=threshold, **kw)


def cosine_threshold_from_distance(distance: float, norm: float = 1.0) -> float:
    """The cosine similarity equivalent to a euclidean ``distance`` between two vectors of
    length ``norm``: ``|a - b|^2 = 2 norm^2 (1 - cos)``, so ``cos = 1 - d^2 / (2 norm^2)``."""
    if distance < 0 or norm <= 0:
        raise ValueError(f"need distance >= 0 and norm > 0, got {distance}, {norm}")
    return 1.0 - distance * distance / (2.0 * norm * norm)
