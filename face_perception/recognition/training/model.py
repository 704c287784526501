"""The network a recognition run trains: where its backbone starts (new, a trained model
folder, or published weights), the backbone + head module one step runs (``TrainModel``, the
unit DDP wraps) and the optimizer's parameter groups."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from face_perception.recognition.training.class_sampling import ClassSampler, sampled_head
from face_perception.recognition.training.config import TrainConfig
from face_perception.recognition.training.data import network_normalisation


class TrainModel(nn.Module):
    """Backbone and (replicated) head in one module, the unit DDP wraps. ``forward`` gives
    (embeddings, logits, labels): with class sampling (``sampler`` enabled, one process) the
    logits cover the sampled classes only and the labels are positions among them."""

    def __init__(self, backbone: nn.Module, head: Optional[nn.Module],
                 dtype: torch.dtype = torch.float32, sampler: Optional[ClassSampler] = None,
                 keys: frozenset = frozenset()):
        super().__init__()
        self.backbone, self.head, self.dtype = backbone, head, dtype
        self.sampler, self.keys = sampler, keys

    def forward(self, x, labels=None):
        emb = self.backbone(x)
        if self.head is None:
            return emb, None, labels
        # the margin (acos, cos of sums) in full precision, also under AMP / bfloat16
        with torch.autocast(x.device.type, enabled=False):
            if labels is not None and self.sampler is not None and self.sampler.enabled:
                index, labels = self.sampler.choose(labels)
                return emb, sampled_head(self.head, self.keys, index, emb.to(self.dtype),
                                         labels), labels
            return emb, self.head(emb.to(self.dtype), labels), labels


def starting_backbone(cfg: TrainConfig):
    """The network a run of ``cfg`` starts from, before any step: (backbone, embedding_size,
    input_size, mean, std, color_order, layout). A new one (mode full), the backbone of
    ``init_model`` (head_only, finetune) or the published weights of ``init_from``; ``layout``:
    the backbone's unit options beyond the defaults, recorded in the model folder."""
    from face_perception.recognition.backbones import FIXED_GEOMETRY, get_model
    from face_perception.recognition.params import backbone_geometry

    if cfg.mode in ("head_only", "finetune"):
        net, meta = _load_backbone(cfg.init_model, cfg.backbone)
        # the layout options of a folder trained from published weights stay with it
        return (net, meta.embedding_size, list(meta.input_size), list(meta.mean),
                list(meta.std), meta.color_order, _layout(meta.architecture_kwargs))
    if cfg.init_from:
        return _published_backbone(cfg)
    size, emb = backbone_geometry(cfg.backbone, list(cfg.input_size), cfg.embedding_size)
    if cfg.backbone in FIXED_GEOMETRY:
        model = get_model(cfg.backbone)
    else:
        model = get_model(cfg.backbone, embedding_size=emb, input_size=tuple(size))
    mean, std = network_normalisation(cfg.rgb_mean, cfg.rgb_std, cfg.color_order)
    return model, emb, size, mean, std, cfg.color_order, {}


def _published_backbone(cfg: TrainConfig):
    """``init_from``: the published network, built in its own layout (arcface_torch's
    units have a mid BN and projection shortcuts ours lack) with its weights; the run's
    geometry and input normalisation must be the ones those weights were trained with."""
    from face_perception.recognition.model_import import published_backbone

    fmt, path = cfg.init_from["format"], cfg.init_from["path"]
    pub = published_backbone(path, fmt, cfg.backbone)
    mean, std = network_normalisation(cfg.rgb_mean, cfg.rgb_std, cfg.color_order)
    wrong = []
    if list(cfg.input_size) != list(pub.input_size):
        wrong.append(f"input_size {cfg.input_size} (the file's: {list(pub.input_size)})")
    if cfg.embedding_size != pub.embedding_size:
        wrong.append(f"embedding_size {cfg.embedding_size} (the file's: "
                     f"{pub.embedding_size})")
    if cfg.color_order != pub.color_order:
        wrong.append(f"color_order {cfg.color_order!r} (the file's: {pub.color_order!r})")
    if not np.allclose(mean, pub.mean) or not np.allclose(std, pub.std):
        wrong.append(f"rgb_mean/rgb_std {cfg.rgb_mean}/{cfg.rgb_std} (the file's: "
                     f"{[v / 255 for v in pub.mean]}/{[v / 255 for v in pub.std]})")
    if wrong:
        raise ValueError(f"init_from {path} ({fmt}) was trained with other settings than "
                         f"this run's: {'; '.join(wrong)}")
    return (pub.model, pub.embedding_size, list(pub.input_size), mean, std,
            pub.color_order, _layout(pub.architecture_kwargs))


def _layout(architecture_kwargs: dict) -> dict:
    """A backbone's unit options (``mid_bn``, ``projection_shortcut``, ...) without its
    geometry."""
    return {k: v for k, v in architecture_kwargs.items()
            if k not in ("embedding_size", "input_size")}


def optimizer_groups(modules: dict, weight_decay: float, decay_bn_and_bias: bool):
    """Optimizer parameter groups of the trainable parameters of ``modules`` ({prefix:
    module}) and their names in optimizer order. Weight decay applies to weights of two or more
    dimensions (convolutions, linear layers, class centres) and, unless ``decay_bn_and_bias``,
    not to the 1-D ones: batch-norm scales and shifts, biases, PReLU slopes (the rule of
    InsightFace's arcface_torch and timm: decaying them only pulls normalisation towards
    zero)."""
    decay, plain = ([], []), ([], [])
    for prefix, module in modules.items():
        for name, p in module.named_parameters():
            if p.requires_grad:
                group = decay if decay_bn_and_bias or p.ndim > 1 else plain
                group[0].append(p)
                group[1].append(f"{prefix}.{name}")
    groups, names = [], []
    for (params, group_names), wd in ((decay, weight_decay), (plain, 0.0)):
        if params:
            groups.append({"params": params, "weight_decay": wd})
            names += group_names
    return groups, names


def _load_backbone(model: str, expected: str):
    """(backbone, ModelMeta) of a model folder (or pretrained name); the
    weights pass the model folder's checksum rule (``model_meta.verified_file``)."""
    from face_perception.recognition.model_folder import load_backbone
    from face_perception.recognition.model_meta import ModelMeta
    from face_perception.recognition.pretrained import resolve_model

    folder = resolve_model(model)
    meta = ModelMeta.load(folder)
    if meta.architecture != expected:
        raise ValueError(f"{folder} holds a {meta.architecture!r} backbone but this run "
                         f"trains {expected!r}")
    return load_backbone(folder, meta), meta
