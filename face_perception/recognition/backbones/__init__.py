"""Embedding networks by name: ``get_model('ir_50', embedding_size=512)``.

Every backbone maps (N, 3, H, W) normalised chips to (N, embedding_size) embeddings. The
ArcFace-style families (IR, IR-SE, ResNet, MobileFaceNet) take 112x112 chips and accept
``embedding_size``, ``input_size`` (width, height) and ``dropout``; ``dlib_resnet`` is dlib's
fixed 128-d network on 150x150 chips (its keyword arguments go to ``DlibResNet``).
Modules are imported on first use so that listing names stays cheap.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported only when a model is built
    from torch import nn

# name -> (module, factory)
_REGISTRY = {
    "ir_18": ("iresnet", "ir_18"),
    "ir_34": ("iresnet", "ir_34"),
    "ir_50": ("iresnet", "ir_50"),
    "ir_101": ("iresnet", "ir_101"),
    "ir_152": ("iresnet", "ir_152"),
    "ir_200": ("iresnet", "ir_200"),
    "ir_se_50": ("iresnet", "ir_se_50"),
    "ir_se_101": ("iresnet", "ir_se_101"),
    "ir_se_152": ("iresnet", "ir_se_152"),
    "resnet_50": ("resnet", "resnet_50"),
    "resnet_101": ("resnet", "resnet_101"),
    "resnet_152": ("resnet", "resnet_152"),
    "mobilefacenet": ("mobilefacenet", "mobilefacenet"),
    "dlib_resnet": ("dlib_resnet", "DlibResNet"),
}
BACKBONE_NAMES = tuple(_REGISTRY)
# Backbones whose geometry is fixed by published weights rather than by constructor arguments.
FIXED_GEOMETRY = {"dlib_resnet": {"embedding_size": 128, "input_size": (150, 150)}}


def get_model(name: str, **kw) -> nn.Module:
    """Build backbone ``name`` (randomly initialised; pretrained weights come from the
    pretrained registry or a saved model folder)."""
    try:
        module, factory = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown backbone {name!r}; valid names: {', '.join(BACKBONE_NAMES)}") from None
    mod = importlib.import_module(f"{__name__}.{module}")
    return getattr(mod, factory)(**kw)
