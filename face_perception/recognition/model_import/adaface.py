"""AdaFace checkpoints (mk-minchul/AdaFace ``*.ckpt``): a PyTorch Lightning dict whose
``state_dict`` holds the backbone under ``model.`` (and the margin head under ``head.``).
AdaFace feeds BGR chips as (pixel / 255 - 0.5) / 0.5."""
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
    depth_of_unit_count,
    load_layout,
)

FORMAT = "adaface"
WHAT = "an AdaFace checkpoint"
LICENSE = ("AdaFace: code MIT (mk-minchul/AdaFace); no separate licence for the checkpoints, "
           "which are trained on face datasets (MS1MV2, WebFace4M/12M, CASIA-WebFace, "
           "VGGFace2) whose terms largely restrict use to non-commercial research")


def inspect(state: dict, source) -> tuple[str, int, bool, int]:
    """(architecture, depth, SE, embedding size) of an AdaFace backbone state dict."""
    units = {int(m.group(1)) for k in state for m in [re.match(r"body\.(\d+)\.", k)] if m}
    if not units or "output_layer.3.weight" not in state:
        raise ModelImportError(f"{source} is not {WHAT}: no body units or output_layer "
                               f"(first keys {sorted(state)[:4]})")
    if any(re.match(r"body\.\d+\.res_layer\.8\.", k) for k in state):
        raise ModelImportError(f"{source}: AdaFace IR-152/200 use bottleneck units, which this "
                               "package does not implement (IR-18/34/50/100 and IR-SE-50 are "
                               "supported)")
    use_se = any(".se_block." in k for k in state)
    fc = state["output_layer.3.weight"]
    if fc.ndim != 2 or fc.shape[1] != 512 * 7 * 7:
        raise ModelImportError(f"{source}: output_layer.3.weight has shape {tuple(fc.shape)}; "
                               "only 112x112 models are supported")
    depth = depth_of_unit_count(max(units) + 1)
    return architecture_name(depth, use_se), depth, use_se, int(fc.shape[0])


# (x / 255 - 0.5) / 0.5 == (x - 127.5) / 127.5, on BGR chips.
COLOR_ORDER, MEAN, STD = "bgr", (127.5,) * 3, (127.5,) * 3


def read_adaface(src: Union[str, os.PathLike], arch: Optional[str] = None):
    """(our IResNet in AdaFace's layout with the checkpoint's weights, architecture name,
    embedding size); ModelImportError for anything else."""
    src = Path(src)
    checkpoint = read_checkpoint(src, WHAT)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise ModelImportError(f"{src} is not {WHAT}: no 'state_dict' entry (AdaFace's "
                               "Lightning checkpoints keep the network there)")
    state = tensor_state(checkpoint, src, WHAT, containers=("state_dict",))
    if not any(k.startswith("model.") for k in state):
        raise ModelImportError(f"{src} is not {WHAT}: its state_dict has no 'model.' keys "
                               f"(first keys {sorted(state)[:4]})")
    state = strip_prefix(state, "model.", keep_only=True)
    architecture, depth, use_se, dim = inspect(state, src)
    if arch is not None and arch != architecture:
        raise ModelImportError(f"{src} holds an {architecture} (from its layers), not --arch "
                               f"{arch}")
    model = load_layout(build_ir("adaface", depth, use_se, dim), state, "adaface", str(src),
                        f"{WHAT} ({architecture})")
    return model, architecture, dim


def import_adaface(src: Union[str, os.PathLike], out: Union[str, os.PathLike],
                   name: Optional[str] = None, arch: Optional[str] = None,
                   threshold: Optional[float] = None) -> Path:
    from face_perception.recognition.model_folder import write_model_folder

    model, architecture, dim = read_adaface(src, arch)
    meta = imported_meta(name or f"adaface_{architecture}", architecture, dim, COLOR_ORDER,
                         MEAN, STD,
                         INSIGHTFACE_SAME_PERSON_COSINE if threshold is None else threshold,
                         src, FORMAT, LICENSE, LAYOUT_KWARGS["adaface"])
    return write_model_folder(out, model, meta)
