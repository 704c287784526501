"""int8 variant of an embedder's ONNX graph, calibrated on aligned real faces, guarded against fp32.

Calibration and guard inputs are the faces of real photos, detected and aligned exactly as the
Embedder does at run time (plus their mirror images). The int8 graph is refused unless every
embedding has cosine >= 0.99 to its fp32 embedding and every pair of guard faces gets the same
same/different decision at the model's threshold.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.files import cache_dir
from face_perception.onnx.quantization import (
    QuantizationError,
    QuantizationRefused,
    cached_guarded_int8,
    calibration_key,
    cosine_rows,
    default_calibration_images,
    int8_cache_path,
    quantize_static_int8,
)

MIN_COSINE = 0.99


def aligned_chips(embedder, images: Sequence[os.PathLike], detector=None) -> np.ndarray:
    """Aligned BGR chips (N, H, W, 3) of every face in ``images`` and of its mirror image."""
    from face_perception.detection import Detector
    from face_perception.imageio import load_bgr

    detector = detector or Detector(backend="onnx")
    chips = []
    for image in images:
        img = load_bgr(image)
        for face in detector.detect(img):
            chip = embedder.align(img, face.landmarks)
            chips.append(chip)
            chips.append(np.ascontiguousarray(chip[:, ::-1]))
    if not chips:
        raise QuantizationError(f"no faces found in the {len(images)} calibration images")
    return np.stack(chips)


def guard_embeddings(fp32: np.ndarray, int8: np.ndarray, threshold: float) -> dict:
    """Figures comparing int8 with fp32 embeddings of the same faces; refuses when they differ.

    Embeddings are compared row by row (cosine) and through the same/different decision of
    every pair at ``threshold`` (cosine similarity of unit vectors).
    """
    cos = cosine_rows(fp32, int8)

    def unit(v):
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    s32 = unit(fp32) @ unit(fp32).T
    s8 = unit(int8) @ unit(int8).T
    iu = np.triu_indices(len(fp32), 1)
    flips = int(((s32[iu] > threshold) != (s8[iu] > threshold)).sum())
    figures = {"faces": int(len(fp32)), "min_cosine": float(cos.min()),
               "mean_cosine": float(cos.mean()), "pairs": int(len(iu[0])),
               "decision_changes": flips}
    if figures["min_cosine"] < MIN_COSINE or flips:
        raise QuantizationRefused(
            f"int8 embedder refused: on {figures['faces']} faces the lowest cosine to fp32 is "
            f"{figures['min_cosine']:.4f} (need >= {MIN_COSINE}) and {flips} of "
            f"{figures['pairs']} pair decisions change at threshold {threshold:.3f}")
    return figures


def int8_onnx_for(embedder, images: Optional[Sequence[os.PathLike]] = None,
                  folder: Optional[Path] = None) -> Path:
    """The guarded int8 graph of ``embedder``'s fp32 ONNX, calibrated on ``images``' faces.

    ``embedder``: an fp32 onnx-backend Embedder. Built once and cached (keyed by the fp32 graph
    and the calibration images' content) with a JSON record of the guard's figures beside it.
    """
    images = [Path(p) for p in (images or default_calibration_images())]
    if not images:
        raise QuantizationError("no calibration images: pass a folder of photos "
                                "(the shipped photos are missing; run make setup)")
    fp32_path = embedder.onnx_path
    folder = folder or cache_dir("recognition") / "onnx"
    out = int8_cache_path(fp32_path, calibration_key(images), folder)

    def build(target: Path) -> dict:
        import onnxruntime as ort

        chips = aligned_chips(embedder, images)
        x = embedder.preprocess(chips).astype(np.float32)
        name = embedder.input_name
        quantize_static_int8(fp32_path, target, [{name: x[i:i + 1]} for i in range(len(x))])
        from face_perception.onnx.session import session_options

        session = ort.InferenceSession(str(target), sess_options=session_options(),
                                       providers=["CPUExecutionProvider"])
        return guard_embeddings(embedder.embed_raw(chips), session.run(None, {name: x})[0],
                                float(embedder.meta.threshold))

    return cached_guarded_int8(fp32_path, out, images, build, "embedder")


def detector_backend_for(backend: str) -> str:
    """The detector backend that runs beside an embedder on ``backend`` (CLI, recognizer node).

    The int8 RetinaFace graph fails its guard on the shipped photos (landmarks move by up to
    12 px, docs/detection.md), so an int8 embedder runs beside the fp32 onnx detector; asking a
    detector alone for onnx-int8 gets the refusal with the figures instead.
    """
    return "onnx" if backend == "onnx-int8" else backend
