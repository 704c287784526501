"""int8 ONNX models: static (QDQ) quantization with onnxruntime's tools, used only past a guard.

Only the arithmetic changes: the int8 graph has the same inputs and outputs as its fp32 source.
Calibration feeds real inputs (images the user gives, or the shipped photos) through the fp32
graph to choose the activation ranges. Each caller (detector, embedder) checks the result against
the fp32 model with its own guard before it is used; ``QuantizationRefused`` carries the figures.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from face_perception.files import atomic_path, atomic_write_bytes, atomic_write_text, sha256_file

log = logging.getLogger(__name__)

# File name suffix of an int8 variant beside (or in the cache next to) its fp32 graph.
INT8_SUFFIX = ".int8.onnx"


class QuantizationRefused(RuntimeError):
    """An int8 model whose outputs differ too much from the fp32 model's (figures in the text)."""


class QuantizationError(RuntimeError):
    """Quantization could not run (no calibration data, unreadable model, ...)."""


def quantize_static_int8(fp32_path: os.PathLike, out_path: os.PathLike,
                         calibration: Iterable[Dict[str, np.ndarray]],
                         per_channel: bool = True,
                         excluded_ops: Sequence[str] = ()) -> Path:
    """Write an int8 QDQ model of ``fp32_path`` to ``out_path`` (atomically).

    ``calibration`` yields feeds (input name -> float32 array) of real data; at least one is
    required. Weights are int8 per channel, activations uint8, as onnxruntime's CPU kernels
    expect. ``excluded_ops``: op types kept in float (e.g. where a layer is too sensitive).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    feeds = list(calibration)
    if not feeds:
        raise QuantizationError(f"no calibration inputs given for {fp32_path}")
    fp32_path = Path(fp32_path)
    if not fp32_path.is_file():
        raise QuantizationError(f"fp32 model not found: {fp32_path}")

    class _Feeds(CalibrationDataReader):
        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

    with tempfile.TemporaryDirectory(prefix="fp_int8_") as tmp:
        pre = Path(tmp) / "pre.onnx"
        # Shape inference and graph clean-up first, as onnxruntime recommends before quantizing.
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        excluded = []
        if excluded_ops:
            import onnx

            graph = onnx.load(str(pre)).graph
            excluded = [n.name for n in graph.node if n.op_type in set(excluded_ops)]
        with atomic_path(out_path) as dest:
            quantize_static(str(pre), str(dest), _Feeds(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=excluded)
    return Path(out_path)


def cached_guarded_int8(fp32_path: os.PathLike, out: Path, images: Sequence[Path],
                        build, what: str) -> Path:
    """The int8 graph at ``out``, built once under a file lock and kept only past its guard.

    ``build(out)`` quantizes into ``out`` and returns the guard's figures, raising
    QuantizationRefused when the graph fails it (``out`` is then removed). A JSON record of the
    figures is written beside ``out``; a cached graph is reused only with its record.
    """
    import json
    import logging

    from face_perception.files import atomic_write_text, file_lock

    record = out.with_suffix(".guard.json")
    if out.is_file() and record.is_file():
        return out
    with file_lock(out.parent / f".{out.name}.lock"):
        if out.is_file() and record.is_file():
            return out
        try:
            figures = build(out)
        except QuantizationRefused:
            out.unlink(missing_ok=True)
            raise
        atomic_write_text(record, json.dumps({"fp32": str(fp32_path), "guard": figures,
                                              "calibration": [str(p) for p in images]},
                                             indent=1))
        logging.getLogger(__name__).info("int8 %s %s: %s", what, out, figures)
    return out


def int8_cache_path(fp32_path: os.PathLike, calibration_key: str, folder: Path) -> Path:
    """Where the int8 variant of ``fp32_path`` calibrated on ``calibration_key`` is cached."""
    fp32_path = Path(fp32_path)
    digest = sha256_file(fp32_path)[:16]
    return folder / f"{fp32_path.stem}-{digest}-{calibration_key[:12]}{INT8_SUFFIX}"


def calibration_key(files: Sequence[os.PathLike]) -> str:
    """A key naming a calibration set by the content of its files (order-independent)."""
    import hashlib

    digest = hashlib.sha256()
    for item in sorted(sha256_file(f) for f in files):
        digest.update(item.encode())
    return digest.hexdigest()


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(na * nb, 1e-12)


def default_calibration_images() -> list[Path]:
    """The shipped real photos (installed by scripts/setup_env.sh), for default calibration."""
    from face_perception.data.sample_photos import sample_photos_dir
    from face_perception.imageio import IMAGE_SUFFIXES

    try:
        folder = sample_photos_dir()
    except FileNotFoundError:
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# -- the model folder's record of its int8 variant ---------------------------------------------
# A model folder (detector or embedder) may hold a guarded int8 graph written by
# ``face-perception quantize``: ``int8.onnx`` plus ``int8.json`` naming the fp32 graph it was
# made from (sha256), its own sha256, the calibration images and the guard's figures.
RECORD_FILE = "int8.json"
RECORDED_ONNX = "int8.onnx"


def calibration_images(folder: Optional[os.PathLike] = None) -> list[Path]:
    """The images of a calibration ``folder`` (or the shipped photos when None/'')."""
    from face_perception.imageio import IMAGE_SUFFIXES

    if not folder:
        images = default_calibration_images()
        if not images:
            raise QuantizationError("no calibration images: pass a folder of photos "
                                    "(the shipped photos are missing; run make setup)")
        return images
    folder = Path(folder)
    if not folder.is_dir():
        raise QuantizationError(f"calibration folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise QuantizationError(f"no images in the calibration folder {folder}")
    return images


def record_int8(model_folder: os.PathLike, int8_path: os.PathLike,
                fp32_path: os.PathLike) -> Path:
    """Copy a guarded int8 graph (and its guard record) into ``model_folder``; returns it."""
    model_folder = Path(model_folder)
    int8_path = Path(int8_path)
    guard = json.loads(int8_path.with_suffix(".guard.json").read_text())
    dest = model_folder / RECORDED_ONNX
    atomic_write_bytes(dest, int8_path.read_bytes())
    record = {"onnx": RECORDED_ONNX, "sha256": sha256_file(dest),
              "fp32_sha256": sha256_file(fp32_path), "guard": guard.get("guard"),
              "calibration": [Path(p).name for p in guard.get("calibration", [])]}
    atomic_write_text(model_folder / RECORD_FILE, json.dumps(record, indent=1))
    return dest


def recorded_int8(model_folder: Optional[os.PathLike], fp32_path: os.PathLike) -> Optional[Path]:
    """The int8 graph recorded in ``model_folder`` for this very fp32 graph, or None.

    A record made from another fp32 graph is ignored (with a log line); a recorded int8 file
    whose checksum does not match its record raises: it is damaged, not merely absent.
    """
    if model_folder is None:
        return None
    record_path = Path(model_folder) / RECORD_FILE
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        name, sha, fp32_sha = record["onnx"], record["sha256"], record["fp32_sha256"]
    except (ValueError, KeyError, TypeError) as exc:
        raise QuantizationError(f"{record_path}: not a valid int8 record ({exc})") from None
    if fp32_sha != sha256_file(fp32_path):
        log.warning("%s was made from another fp32 model than %s: ignored", record_path,
                    fp32_path)
        return None
    path = Path(model_folder) / Path(name).name
    if not path.is_file() or sha256_file(path) != sha:
        raise QuantizationError(f"{path}: missing or checksum differs from {record_path} "
                                "(truncated or modified); run face-perception quantize again")
    return path
