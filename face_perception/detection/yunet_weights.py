"""YuNet-n weights: shipped in the package (converted from the published ONNX), checked, loaded.

``pretrained/yunet_n.npz`` holds the state dict of :class:`~face_perception.detection.yunet.YuNet`
converted by ``scripts/convert_yunet.py`` from libfacedetection.train's
``onnx/yunet_n_dynamic.onnx``
(Apache-2.0; ``pretrained/LICENSE.yunet`` and ``pretrained/NOTICE.yunet``). A plain .npz of float32
arrays read with ``allow_pickle=False``; its sha256 is pinned here and checked on every load.
The ONNX export the 'onnx' backend runs is made from these weights and cached with a parity check.
"""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.files import cache_dir, file_lock, sha256_file

log = logging.getLogger(__name__)

PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"
WEIGHTS_FILE = PRETRAINED_DIR / "yunet_n.npz"
# sha256 of WEIGHTS_FILE as scripts/convert_yunet.py wrote it (and of the ONNX it came from).
WEIGHTS_SHA256 = "85bccf02b4db5ba9470ba9e405f36af0d46301bd4849f99f71796bf47c42cdc9"
SOURCE_ONNX_SHA256 = "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12"
CACHE_SUBDIR = "yunet"
# Largest absolute output difference accepted between the torch module and an ONNX export.
PARITY_TOLERANCE = 1e-3


class YuNetWeightsError(RuntimeError):
    """YuNet weights that are missing, damaged or do not fit the network."""


def _conv_name_map() -> dict[str, str]:
    """Published module name of each 1x1 ('point') convolution -> ours."""
    names = {"backbone.model0.conv2.conv1": "stem.unit.point"}
    for k in range(1, 6):
        for j in (1, 2):
            names[f"backbone.model{k}.conv{j}.conv1"] = f"stages.{k - 1}.{j - 1}.point"
    for i in range(3):
        names[f"neck.lateral_convs.{i}.conv1"] = f"lateral.{i}.point"
        names[f"bbox_head.multi_level_share_convs.{i}.0.conv1"] = f"head.share.{i}.point"
        for kind in ("cls", "obj", "bbox", "kps"):
            names[f"bbox_head.multi_level_{kind}.{i}.conv1"] = f"head.{kind}.{i}.point"
    return names


def onnx_to_state_dict(onnx_bytes: bytes) -> dict[str, np.ndarray]:
    """Our YuNet state dict (float32 arrays) from a published YuNet-n ONNX graph.

    The published graph names the weights of its 1x1 convolutions after the training code's
    modules; the 3x3 depthwise convolutions that follow them carry folded batch norm under
    numbered names. So each depthwise convolution is found by the data flow: the Conv node that
    consumes a named 1x1 convolution's output. The stem is the Conv fed by the graph input.
    Raises YuNetWeightsError when the graph does not have that shape.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    consumer = {}
    for node in convs:
        consumer.setdefault(node.input[0], node)
    state: dict[str, np.ndarray] = {}

    def put(ours: str, node) -> None:
        state[f"{ours}.weight"] = inits[node.input[1]]
        state[f"{ours}.bias"] = inits[node.input[2]] if len(node.input) > 2 \
            else np.zeros(inits[node.input[1]].shape[0], np.float32)

    graph_input = graph.input[0].name
    stems = [n for n in convs if n.input[0] == graph_input]
    if len(stems) != 1:
        raise YuNetWeightsError(f"expected one convolution on the graph input, found {len(stems)}")
    put("stem.conv", stems[0])
    names = _conv_name_map()
    for node in convs:
        prefix = node.input[1].rsplit(".weight", 1)[0]
        if prefix not in names:
            continue
        put(names[prefix], node)
        depth = consumer.get(node.output[0])
        if depth is None:
            raise YuNetWeightsError(f"no depthwise convolution after {prefix}")
        put(names[prefix].replace(".point", ".depth"), depth)
    missing = [p for p in names.values() if f"{p}.weight" not in state]
    if missing:
        raise YuNetWeightsError(f"the ONNX graph lacks the convolutions of {missing}")
    return state


def save_npz(state: dict[str, np.ndarray], path: os.PathLike) -> str:
    """Write ``state`` as an uncompressed .npz with sorted keys (byte-identical for the same
    arrays); returns its sha256."""
    from face_perception.files import atomic_write_bytes, sha256_bytes

    buf = io.BytesIO()
    np.savez(buf, **{k: state[k] for k in sorted(state)})
    data = buf.getvalue()
    atomic_write_bytes(path, data)
    return sha256_bytes(data)


def load_state_dict(path: Optional[os.PathLike] = None,
                    expected_sha256: Optional[str] = None) -> dict:
    """The YuNet state dict as torch tensors from ``path`` (default: the shipped weights,
    checked against WEIGHTS_SHA256). Raises YuNetWeightsError naming the file when it is
    missing, damaged or not a plain array archive."""
    import torch

    path = Path(path) if path else WEIGHTS_FILE
    if not path.is_file():
        raise YuNetWeightsError(f"YuNet weights file not found: {path}")
    expected = expected_sha256 or (WEIGHTS_SHA256 if path == WEIGHTS_FILE else None)
    if expected is not None:
        got = sha256_file(path)
        if got != expected:
            raise YuNetWeightsError(f"checksum mismatch for {path} (truncated or modified): "
                                    f"expected {expected}, got {got}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {k: torch.from_numpy(np.array(archive[k], np.float32)) for k in archive.files}
    except (ValueError, OSError) as exc:
        raise YuNetWeightsError(f"{path} is not a YuNet .npz weights file: {exc}") from None


def build_model(path: Optional[os.PathLike] = None, expected_sha256: Optional[str] = None):
    """A YuNet in eval mode with the shipped (or ``path``'s) weights, strictly matched."""
    from face_perception.detection.yunet import YuNet

    net = YuNet()
    state = load_state_dict(path, expected_sha256)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise YuNetWeightsError(f"{path or WEIGHTS_FILE} does not fit YuNet-n: {exc}") from None
    return net.eval()


def parity_inputs(seed: int = 0) -> list[np.ndarray]:
    """Seeded raw-pixel blobs (0..255) at two sizes and batch sizes, for export parity."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(0, 255, (n, 3, h, w)).astype(np.float32)
            for n, h, w in ((1, 256, 320), (2, 160, 224))]


def export_onnx(path: os.PathLike, weights: Optional[os.PathLike] = None,
                opset: Optional[int] = None) -> float:
    """Export YuNet (dynamic batch, height, width; the published output names) to ``path``,
    kept only if onnxruntime matches torch within PARITY_TOLERANCE; returns the difference."""
    import torch

    from face_perception.detection.yunet import INPUT_NAME, OUTPUT_NAMES
    from face_perception.onnx.export import DEFAULT_OPSET, export_checked

    axes = {INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
            **{name: {0: "batch", 1: "cells"} for name in OUTPUT_NAMES}}
    return export_checked(build_model(weights), path, torch.zeros(1, 3, 320, 320),
                          parity_inputs(), PARITY_TOLERANCE, [INPUT_NAME], OUTPUT_NAMES, axes,
                          opset=opset or DEFAULT_OPSET)


def cached_onnx(weights: Optional[os.PathLike] = None) -> Path:
    """Our parity-checked ONNX export of the shipped (or ``weights``') YuNet, cached by the
    weights' sha256 with a checksum sidecar (a damaged cache file is exported again)."""
    from face_perception.detection import weights as W
    from face_perception.onnx.export import DEFAULT_OPSET

    source = sha256_file(weights) if weights else WEIGHTS_SHA256
    path = cache_dir(CACHE_SUBDIR) / f"yunet_n_{source[:16]}_opset{DEFAULT_OPSET}.onnx"
    if W.matches_sidecar(path):
        return path
    with file_lock(cache_dir(CACHE_SUBDIR) / f".{path.name}.lock"):
        if not W.matches_sidecar(path):
            diff = export_onnx(path, weights)
            log.info("exported %s (max abs diff vs torch %.2e)", path, diff)
            W.write_sidecar(path)
    return path
