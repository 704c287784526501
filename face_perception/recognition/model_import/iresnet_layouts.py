"""The IR / IR-SE networks of other code bases as key layouts of this package's ``IResNet``.

Three layouts hold the same network under other names (and, for two of them, with the unit
variants ``mid_bn`` / ``projection_shortcut`` of ``backbones/iresnet.py``):

* ``arcface_torch`` (InsightFace recognition/arcface_torch/backbones/iresnet.py):
  ``conv1 bn1 prelu``, ``layer{1-4}.{i}.{bn1 conv1 bn2 prelu conv2 bn3 downsample.0/1}``,
  ``bn2 fc features``; a BN between conv1 and PReLU, a 1x1 conv shortcut on every strided unit.
* ``adaface`` (mk-minchul/AdaFace net.py): ``input_layer.0-2``,
  ``body.{k}.res_layer.{0-5}`` (+ ``se_block`` for IR-SE), ``body.{k}.shortcut_layer.0/1``,
  ``output_layer.{0,3,4}`` whose last BatchNorm1d has no affine weights; mid BN, max-pool
  shortcut when the width stays.
* ``evolve`` (face.evoLVe, which OpenDR's learner uses): as adaface without the mid BN and
  with the SE module at ``res_layer.5``; this package's default unit.

:func:`load_layout` checks the foreign key set and every shape before loading, so a file of
another format or depth is refused with the keys that differ, never half-loaded.
"""
from __future__ import annotations

import re
from typing import Optional

from face_perception.recognition.model_import.errors import ModelImportError

LAYOUTS = ("arcface_torch", "adaface", "evolve")
# Unit variants each layout needs (IResNet keyword arguments).
LAYOUT_KWARGS = {
    "arcface_torch": {"mid_bn": True, "projection_shortcut": True},
    "adaface": {"mid_bn": True},
    "evolve": {},
}
_ARCFACE_UNIT = ("bn1", "conv1", "bn2", "prelu", "conv2", "bn3")
_ARCFACE_STEM = ("conv1", "bn1", "prelu")
_ARCFACE_HEAD = {0: "bn2", 3: "fc", 4: "features"}


def depth_of_units(units) -> int:
    """The IR depth whose stages have ``units`` (a 4-tuple), else ModelImportError."""
    from face_perception.recognition.backbones.iresnet import STAGE_UNITS

    for depth, want in STAGE_UNITS.items():
        if tuple(units) == want:
            return depth
    raise ModelImportError(f"no IR depth has {tuple(units)} units per stage (known: "
                           f"{dict(STAGE_UNITS)})")


def depth_of_unit_count(count: int) -> int:
    from face_perception.recognition.backbones.iresnet import STAGE_UNITS

    for depth, units in STAGE_UNITS.items():
        if sum(units) == count:
            return depth
    raise ModelImportError(f"no IR depth has {count} residual units (known: "
                           f"{ {d: sum(u) for d, u in STAGE_UNITS.items()} })")


def architecture_name(depth: int, use_se: bool) -> str:
    return f"ir_{'se_' if use_se else ''}{depth}"


def foreign_key(layout: str, key: str, stage_of_unit: list) -> str:
    """The name ``layout`` gives this package's IResNet state-dict ``key``."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    parts = key.split(".")
    if layout == "arcface_torch":
        if parts[0] == "stem":
            return ".".join([_ARCFACE_STEM[int(parts[1])]] + parts[2:])
        if parts[0] == "head":
            return ".".join([_ARCFACE_HEAD[int(parts[1])]] + parts[2:])
        stage, index = stage_of_unit[int(parts[1])]
        if parts[2] == "residual":
            name = _ARCFACE_UNIT[int(parts[3])]
            return ".".join([f"layer{stage}", str(index), name] + parts[4:])
        return ".".join([f"layer{stage}", str(index), "downsample"] + parts[3:])
    if parts[0] == "stem":
        return ".".join(["input_layer"] + parts[1:])
    if parts[0] == "head":
        return ".".join(["output_layer"] + parts[1:])
    if parts[2] == "shortcut":
        return ".".join(["body", parts[1], "shortcut_layer"] + parts[3:])
    # residual: AdaFace appends its SE module under a name, face.evoLVe by position.
    sub = parts[3]
    if layout == "adaface" and re.fullmatch(r"\d+", sub) and int(sub) == 6:
        sub = "se_block"
    return ".".join(["body", parts[1], "res_layer", sub] + parts[4:])


def build_ir(layout: str, depth: int, use_se: bool, embedding_size: int):
    """This package's IResNet in the unit variant of ``layout`` (random weights, eval mode)."""
    from face_perception.recognition.backbones.iresnet import IResNet

    return IResNet(depth, use_se, embedding_size=embedding_size, input_size=(112, 112),
                   **LAYOUT_KWARGS[layout]).eval()


def key_map(model, layout: str) -> dict:
    """{foreign key: our key} for every entry of ``model``'s state dict."""
    from face_perception.recognition.backbones.iresnet import STAGE_UNITS

    stage_of_unit = [(s + 1, i) for s, n in enumerate(STAGE_UNITS[model.depth])
                     for i in range(n)]
    return {foreign_key(layout, k, stage_of_unit): k for k in model.state_dict()}


def _optional(layout: str, our_key: str) -> bool:
    """Entries a valid file may lack: BN batch counters (older torch) and AdaFace's
    affine-free final BatchNorm1d weights (identity: 1 and 0)."""
    if our_key.endswith("num_batches_tracked"):
        return True
    return layout == "adaface" and our_key in ("head.4.weight", "head.4.bias")


def load_layout(model, state: dict, layout: str, source: str, what: str,
                ignore: Optional[set] = None):
    """Load ``state`` (foreign names) into ``model`` after checking names and shapes."""
    import torch

    mapping = key_map(model, layout)
    ours = model.state_dict()
    ignore = ignore or set()
    unexpected = sorted(k for k in state if k not in mapping and k not in ignore)
    missing = sorted(f for f, o in mapping.items() if f not in state and not _optional(layout, o))
    if unexpected or missing:
        raise ModelImportError(
            f"{source} is not {what}: {len(missing)} expected keys missing "
            f"{missing[:4]}, {len(unexpected)} unexpected keys {unexpected[:4]}")
    new = {}
    for fkey, okey in mapping.items():
        want = ours[okey]
        if fkey not in state:  # an optional entry: its identity value
            new[okey] = torch.ones_like(want) if okey.endswith("weight") else \
                torch.zeros_like(want)
            continue
        got = state[fkey]
        if tuple(got.shape) != tuple(want.shape):
            raise ModelImportError(f"{source}: {fkey} has shape {tuple(got.shape)}, {what} "
                                   f"needs {tuple(want.shape)}")
        new[okey] = got.detach().to(want.dtype).clone()
    model.load_state_dict(new, strict=True)
    return model.eval()
