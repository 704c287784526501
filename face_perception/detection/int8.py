"""int8 variant of a RetinaFace ONNX graph, built once per calibration set and guarded against fp32.

Calibration runs the detector's own pre-processing (size policy, mean subtraction) on real
images, so the activation ranges are those the camera frames produce. The guard detects faces
with both graphs on the guard images and refuses the int8 graph unless every fp32 face has an
int8 twin (box IoU >= 0.9, every landmark within 2 px) and no extra face appears.

The Detector builds its int8 graph with ``detector.int8_onnx_for``, which calls
``guarded_int8_graph`` here with a way to make detectors: this module never imports the
Detector, so the import runs one way.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.files import cache_dir
from face_perception.onnx.quantization import (
    QuantizationError,
    QuantizationRefused,
    cached_guarded_int8,
    calibration_key,
    default_calibration_images,
    int8_cache_path,
    quantize_static_int8,
)

MIN_IOU = 0.9
MAX_LANDMARK_PX = 2.0
CACHE_SUBDIR = "retinaface"


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def compare_faces(reference: Sequence, candidate: Sequence) -> dict:
    """Figures of how ``candidate`` faces (int8) match ``reference`` faces (fp32) of one image.

    Each reference face is paired with the candidate of highest IoU. Returns the counts, the
    worst IoU and the worst landmark distance (px) over the pairs.
    """
    used: set[int] = set()
    worst_iou, worst_lm, missing = 1.0, 0.0, 0
    for ref in reference:
        best, best_j = 0.0, -1
        for j, cand in enumerate(candidate):
            if j in used:
                continue
            iou = box_iou(ref.box, cand.box)
            if iou > best:
                best, best_j = iou, j
        if best_j < 0 or best < 0.5:
            missing += 1
            continue
        used.add(best_j)
        worst_iou = min(worst_iou, best)
        if ref.landmarks is not None and candidate[best_j].landmarks is not None:
            diff = np.asarray(ref.landmarks) - np.asarray(candidate[best_j].landmarks)
            dist = np.linalg.norm(diff, axis=1).max()
            worst_lm = max(worst_lm, float(dist))
    return {"reference": len(reference), "candidate": len(candidate), "missing": missing,
            "extra": len(candidate) - len(used), "worst_iou": worst_iou,
            "worst_landmark_px": worst_lm}


def guard_detections(fp32_detector, int8_detector, images: Sequence) -> dict:
    """Run both detectors on ``images`` and raise QuantizationRefused unless int8 matches fp32.

    Returns the worst figures over the images (for logs and the model folder's record).
    """
    from face_perception.imageio import load_bgr

    total = {"images": 0, "faces": 0, "missing": 0, "extra": 0, "worst_iou": 1.0,
             "worst_landmark_px": 0.0}
    for image in images:
        img = load_bgr(image)
        figures = compare_faces(fp32_detector.detect(img), int8_detector.detect(img))
        total["images"] += 1
        total["faces"] += figures["reference"]
        total["missing"] += figures["missing"]
        total["extra"] += figures["extra"]
        total["worst_iou"] = min(total["worst_iou"], figures["worst_iou"])
        total["worst_landmark_px"] = max(total["worst_landmark_px"], figures["worst_landmark_px"])
    if total["images"] == 0:
        raise QuantizationError("no guard images for the int8 detector")
    if total["missing"] or total["extra"] or total["worst_iou"] < MIN_IOU \
            or total["worst_landmark_px"] > MAX_LANDMARK_PX:
        raise QuantizationRefused(
            f"int8 detector refused: on {total['images']} images with {total['faces']} faces, "
            f"{total['missing']} missing and {total['extra']} extra faces, worst box IoU "
            f"{total['worst_iou']:.3f} (need >= {MIN_IOU}), worst landmark "
            f"{total['worst_landmark_px']:.2f} px (need <= {MAX_LANDMARK_PX})")
    return total


def calibration_feeds(detector, images: Sequence) -> list:
    """The network inputs the detector would run on ``images`` (its size policy and mean)."""
    from face_perception.imageio import load_bgr

    feeds = []
    for image in images:
        img = load_bgr(image)
        blob, _ = detector.preprocess(img)
        feeds.append({"input": blob})
    return feeds


def guarded_int8_graph(fp32_onnx: os.PathLike, settings: dict,
                       make_detector: Callable[[os.PathLike], object],
                       images: Optional[Sequence[os.PathLike]] = None,
                       folder: Optional[Path] = None) -> Path:
    """The guarded int8 graph of ``fp32_onnx`` calibrated on ``images`` (default: shipped photos).

    Built once and cached (keyed by the fp32 graph, the calibration images' content and the
    detector ``settings``: the size policy decides what the network sees) with a JSON record of
    the guard's figures beside it; a cached file is reused only with its record.
    ``make_detector(onnx_path)``: an onnx Detector with those settings, for calibration and the
    guard (``detector.int8_onnx_for`` passes it).
    """
    images = [Path(p) for p in (images or default_calibration_images())]
    if not images:
        raise QuantizationError("no calibration images: pass a folder of photos "
                                "(the shipped photos are missing; run make setup)")
    folder = folder or cache_dir(CACHE_SUBDIR)
    key = calibration_key(images) + json.dumps(settings, sort_keys=True, default=str)
    out = int8_cache_path(fp32_onnx, hashlib.sha256(key.encode()).hexdigest(), folder)

    def build(target: Path) -> dict:
        fp32 = make_detector(fp32_onnx)
        quantize_static_int8(fp32_onnx, target, calibration_feeds(fp32, images))
        return guard_detections(fp32, make_detector(target), images)

    return cached_guarded_int8(fp32_onnx, out, images, build, "detector")
