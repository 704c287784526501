"""InsightFace arcface_torch ``.pth`` files (``model.pt`` / ``backbone.pth`` of its training
runs: a plain iresnet state dict; also a resume checkpoint's ``state_dict_backbone``)."""
from __future__ import annotations

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
    LAYOUT_KWARGS,
    architecture_name,
    build_ir,
    depth_of_units,
    load_layout,
)

FORMAT = "arcface-torch"
WHAT = "an arcface_torch iresnet state dict"
LICENSE = ("InsightFace: code MIT; its released models (and models trained on its training "
           "data) are for non-commercial research purposes only")


def inspect(state: dict, source) -> tuple[str, int, int]:
    """(architecture, depth, embedding size) of an arcface_torch iresnet state dict."""
    units = []
    for stage in range(1, 5):
        idx = {int(m.group(1)) for k in state
               for m in [re.match(rf"layer{stage}\.(\d+)\.", k)] if m}
        units.append(max(idx) + 1 if idx else 0)
    if "fc.weight" not in state or not all(units):
        raise ModelImportError(f"{source} is not {WHAT}: no fc.weight or no layer1-4 units "
                               f"(first keys {sorted(state)[:4]})")
    if any(".se" in k or "se_block" in k for k in state):
        raise ModelImportError(f"{source}: arcface_torch iresnets have no SE blocks")
    fc = state["fc.weight"]
    if fc.ndim != 2 or fc.shape[1] != 512 * 7 * 7:
        raise ModelImportError(f"{source}: fc.weight has shape {tuple(fc.shape)}; only "
                               "112x112 models (512 x 7 x 7 features) are supported")
    depth = depth_of_units(units)
    return architecture_name(depth, False), depth, int(fc.shape[0])


# What the network sees: RGB chips as (pixel - 127.5) / 127.5.
COLOR_ORDER, MEAN, STD = "rgb", (127.5,) * 3, (127.5,) * 3


def read_arcface_torch(src: Union[str, os.PathLike], arch: Optional[str] = None):
    """(our IResNet in arcface_torch's layout with the file's weights, architecture name,
    embedding size); ModelImportError for anything else."""
    src = Path(src)
    state = tensor_state(read_checkpoint(src, WHAT), src, WHAT,
                         containers=("state_dict_backbone", "state_dict"))
    # DistributedDataParallel and torch.compile wrap the names.
    state = strip_prefix(strip_prefix(state, "module."), "_orig_mod.")
    if any(k.startswith("mobilefacenet") or k.startswith("layers.") for k in state):
        raise ModelImportError(f"{src}: an arcface_torch MobileFaceNet; export it to ONNX with "
                               "arcface_torch's torch2onnx.py and import that with --format "
                               "insightface-onnx")
    architecture, depth, dim = inspect(state, src)
    if arch is not None and arch != architecture:
        raise ModelImportError(f"{src} holds an {architecture} (from its layers), not --arch "
                               f"{arch}")
    model = load_layout(build_ir("arcface_torch", depth, False, dim), state, "arcface_torch",
                        str(src), f"{WHAT} ({architecture})")
    return model, architecture, dim


def import_arcface_torch(src: Union[str, os.PathLike], out: Union[str, os.PathLike],
                         name: Optional[str] = None, arch: Optional[str] = None,
                         threshold: Optional[float] = None) -> Path:
    from face_perception.recognition.model_folder import write_model_folder

    model, architecture, dim = read_arcface_torch(src, arch)
    meta = imported_meta(name or f"arcface_torch_{architecture}", architecture, dim,
                         COLOR_ORDER, MEAN, STD,
                         INSIGHTFACE_SAME_PERSON_COSINE if threshold is None else threshold,
                         src, FORMAT, LICENSE,
                         LAYOUT_KWARGS["arcface_torch"])
    return write_model_folder(out, model, meta)
