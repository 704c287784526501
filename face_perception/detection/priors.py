"""Prior (anchor) boxes of RetinaFace for an input size, cached per size.

Priors are (cx, cy, w, h) normalised to the input width/height, ordered level by level (stride 8,
16, 32), then row by row, column by column, then anchor size: the order in which the heads emit
their predictions. NumPy only, so the onnxruntime path never imports torch.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Sequence

import numpy as np

from face_perception.detection.config import MIN_SIZES, STEPS


def feature_map_sizes(height: int, width: int,
                      steps: Sequence[int] = STEPS) -> list[tuple[int, int]]:
    """(rows, cols) of each pyramid level for an input of ``height`` x ``width`` pixels.

    Every stride-2 convolution with padding 1 rounds up, so the maps are ceil(size / step).
    """
    return [(math.ceil(height / s), math.ceil(width / s)) for s in steps]


def prior_count(height: int, width: int, min_sizes=MIN_SIZES, steps=STEPS) -> int:
    return sum(r * c * len(m) for (r, c), m in zip(feature_map_sizes(height, width, steps),
                                                   min_sizes))


def _as_key(nested) -> tuple:
    return tuple(tuple(int(v) for v in level) for level in nested)


@lru_cache(maxsize=32)
def _priors_cached(height: int, width: int, min_sizes: tuple, steps: tuple,
                   clip: bool) -> np.ndarray:
    levels = []
    for (rows, cols), sizes, step in zip(feature_map_sizes(height, width, steps), min_sizes,
                                         steps):
        cx = (np.arange(cols, dtype=np.float64) + 0.5) * step / width
        cy = (np.arange(rows, dtype=np.float64) + 0.5) * step / height
        gx, gy = np.meshgrid(cx, cy)  # (rows, cols), row-major like the head outputs
        n_anchor = len(sizes)
        level = np.empty((rows, cols, n_anchor, 4), dtype=np.float64)
        level[..., 0] = gx[:, :, None]
        level[..., 1] = gy[:, :, None]
        level[..., 2] = np.asarray(sizes, dtype=np.float64) / width
        level[..., 3] = np.asarray(sizes, dtype=np.float64) / height
        levels.append(level.reshape(-1, 4))
    priors = np.concatenate(levels, axis=0).astype(np.float32)
    if clip:
        np.clip(priors, 0.0, 1.0, out=priors)
    priors.setflags(write=False)  # shared by every caller through the cache
    return priors


def prior_boxes(height: int, width: int, min_sizes=MIN_SIZES, steps=STEPS,
                clip: bool = False) -> np.ndarray:
    """Priors for an input of ``height`` x ``width``: read-only float32 array (N, 4).

    Cached per (size, anchors, steps): a camera stream computes them once.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"input size must be positive, got {height}x{width}")
    if len(min_sizes) != len(steps):
        raise ValueError(f"{len(min_sizes)} anchor-size levels but {len(steps)} steps")
    return _priors_cached(int(height), int(width), _as_key(min_sizes),
                          tuple(int(s) for s in steps), bool(clip))


def prior_boxes_for(cfg: dict, height: int, width: int) -> np.ndarray:
    """Priors for a backbone config dict (see ``config.py``)."""
    return prior_boxes(height, width, cfg["min_sizes"], cfg["steps"], cfg.get("clip", False))


class PriorBox:
    """Torch-friendly wrapper: ``PriorBox(cfg, (h, w)).forward()`` -> float32 tensor (N, 4).

    For training code that wants the priors as a tensor on a device.
    """

    def __init__(self, cfg: dict, image_size: tuple[int, int]):
        self.cfg = cfg
        self.image_size = (int(image_size[0]), int(image_size[1]))

    def forward(self, device=None):
        import torch

        arr = prior_boxes_for(self.cfg, *self.image_size)
        return torch.from_numpy(arr.copy()).to(device) if device is not None else \
            torch.from_numpy(arr.copy())

    __call__ = forward
