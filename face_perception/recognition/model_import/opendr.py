"""OpenDR ``FaceRecognitionLearner.save`` folders: ``backbone_<name>.json`` (its metadata, with
``inference_params.threshold``) beside ``backbone_<name>.pth`` (a face.evoLVe IR / IR-SE state
dict), or, after ``optimize()``, beside ``onnx_<name>_backbone_model.onnx`` (kept as it is).
OpenDR feeds RGB chips normalised with mean 0.5 and std 0.5 of 0..1 pixels."""
from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Optional, Union

from face_perception.recognition.model_import.checkpoint import (
    read_checkpoint,
    strip_prefix,
    tensor_state,
)
from face_perception.recognition.model_import.errors import ModelImportError
from face_perception.recognition.model_import.imported_meta import (
    INSIGHTFACE_SAME_PERSON_COSINE,
    imported_meta,
)
from face_perception.recognition.model_import.iresnet_layouts import (
    build_ir,
    depth_of_unit_count,
    load_layout,
)

FORMAT = "opendr"
WHAT = "an OpenDR face recognition backbone"
LICENSE = ("OpenDR toolkit: Apache-2.0; weights trained by you are yours, OpenDR's pretrained "
           "backbones are trained on public face datasets: check their terms")
SUPPORTED = ("ir_50", "ir_101", "ir_152", "ir_se_50", "ir_se_101", "ir_se_152")
# OpenDR backbones this package cannot hold: a different network, not a naming difference.
UNSUPPORTED = {
    "mobilefacenet": "OpenDR's mobilefacenet is a MobileNetV2 variant with ReLU6 and a 128-d "
                     "conv head, not the MobileFaceNet this package implements",
    "resnet_50": "OpenDR's resnet backbones are not supported (IR and IR-SE are)",
    "resnet_101": "OpenDR's resnet backbones are not supported (IR and IR-SE are)",
    "resnet_152": "OpenDR's resnet backbones are not supported (IR and IR-SE are)",
}


def _metadata_file(src: Path) -> Path:
    if src.is_file() and src.suffix == ".json":
        return src
    if src.is_file():
        raise ModelImportError(f"{src}: give the folder OpenDR's save() wrote (or its "
                               "backbone_<name>.json), not the weights file alone")
    if not src.is_dir():
        raise FileNotFoundError(f"OpenDR model folder not found: {src}")
    found = sorted(src.glob("backbone_*.json"))
    if len(found) != 1:
        raise ModelImportError(f"{src} is not an OpenDR model folder: expected one "
                               f"backbone_<name>.json, found {[p.name for p in found]}")
    return found[0]


def cosine_of_squared_distance(threshold: float) -> float:
    """OpenDR names a face when the squared euclidean distance of the L2-normalised
    embeddings is below ``threshold``; for unit vectors that is cosine > 1 - threshold / 2."""
    return 1.0 - threshold / 2.0


def _read_metadata(meta_file: Path) -> tuple[bool, float]:
    """(optimized, saved squared-distance threshold) from OpenDR's backbone JSON."""
    try:
        info = json.loads(meta_file.read_text())
        optimized = bool(info.get("optimized", False)) or info.get("format") == "onnx"
        saved = float(info.get("inference_params", {}).get("threshold", 0.0))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError) as exc:
        raise ModelImportError(f"{meta_file}: not OpenDR metadata JSON ({exc})") from None
    if not math.isfinite(saved) or not 0.0 <= saved <= 4.0:
        raise ModelImportError(f"{meta_file}: threshold {saved} is not a squared distance of "
                               "unit vectors (0..4)")
    return optimized, saved


def import_opendr(src: Union[str, os.PathLike], out: Union[str, os.PathLike],
                  name: Optional[str] = None, arch: Optional[str] = None,
                  threshold: Optional[float] = None) -> Path:
    from face_perception.recognition.model_folder import (
        write_model_folder,
        write_onnx_model_folder,
    )

    meta_file = _metadata_file(Path(src))
    match = re.fullmatch(r"backbone_(.+)\.json", meta_file.name)
    backbone = match.group(1) if match else ""
    if backbone not in SUPPORTED and backbone not in UNSUPPORTED:
        raise ModelImportError(f"{meta_file}: unknown OpenDR backbone {backbone!r} "
                               f"(supported: {', '.join(SUPPORTED)})")
    if arch is not None and arch != backbone:
        raise ModelImportError(f"{meta_file} is an OpenDR {backbone}, not --arch {arch}")
    optimized, saved = _read_metadata(meta_file)
    if threshold is None:
        threshold = (cosine_of_squared_distance(saved) if saved > 0
                     else INSIGHTFACE_SAME_PERSON_COSINE)
    if optimized:
        # optimize() wrote the backbone as ONNX (input 'data', normalised outside like the
        # .pth): kept as it is, so every OpenDR backbone works this way.
        from face_perception.recognition.model_import.insightface_onnx import checked_graph

        graph = meta_file.parent / f"onnx_{backbone}_backbone_model.onnx"
        blob, dim, _ = checked_graph(graph, raw_pixels=False)
        meta = imported_meta(name or f"opendr_{backbone}", "onnx_graph", dim, "rgb",
                             (127.5,) * 3, (127.5,) * 3, threshold, graph, FORMAT, LICENSE)
        return write_onnx_model_folder(out, blob, meta)
    if backbone in UNSUPPORTED:
        raise ModelImportError(f"{meta_file}: {UNSUPPORTED[backbone]}; an OpenDR folder saved "
                               "after optimize() (ONNX) can be imported")
    weights = meta_file.with_suffix(".pth")
    state = tensor_state(read_checkpoint(weights, WHAT), weights, WHAT,
                         containers=("backbone_state_dict",))
    state = strip_prefix(state, "module.")
    units = {int(m.group(1)) for k in state for m in [re.match(r"body\.(\d+)\.", k)] if m}
    if not units:
        raise ModelImportError(f"{weights} is not {WHAT}: no body units "
                               f"(first keys {sorted(state)[:4]})")
    depth, use_se = depth_of_unit_count(max(units) + 1), backbone.startswith("ir_se")
    if f"{'ir_se' if use_se else 'ir'}_{depth}" != backbone:
        raise ModelImportError(f"{weights} holds {max(units) + 1} units, not an OpenDR "
                               f"{backbone}")
    fc = state.get("output_layer.3.weight")
    dim = int(fc.shape[0]) if fc is not None and fc.ndim == 2 else 512
    model = load_layout(build_ir("evolve", depth, use_se, dim), state, "evolve", str(weights),
                        f"{WHAT} ({backbone})")
    meta = imported_meta(name or f"opendr_{backbone}", backbone, dim, "rgb", (127.5,) * 3,
                         (127.5,) * 3, threshold, weights, FORMAT, LICENSE)
    return write_model_folder(out, model, meta)
