"""Face chip -> network input, written once: the Embedder, training and the aligned-face dataset
all feed their networks through :class:`NetworkInput`, so a model sees in training exactly what
it sees in use. Chip size, colour order and normalisation come from the model's metadata."""
from __future__ import annotations

from typing import Sequence

import numpy as np


class NetworkInput:
    """BGR uint8 chips -> float32 network input ``(pixel - mean) / std``, channels first, in the
    network's colour order. ``mean``/``std``: per channel, 0..255, network channel order (the
    ModelMeta convention). A chip of another size is resized to ``input_size`` (W, H) first
    (area when shrinking, bilinear when enlarging). A plain class (no lambdas), so DataLoader
    workers can pickle it."""

    def __init__(self, input_size: Sequence[int], mean: Sequence[float], std: Sequence[float],
                 color_order: str):
        if color_order not in ("rgb", "bgr"):
            raise ValueError(f"color_order must be 'rgb' or 'bgr', got {color_order!r}")
        self.size = (int(input_size[0]), int(input_size[1]))
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.inv_std = (1.0 / np.asarray(std, np.float32)).reshape(3, 1, 1)
        self.color_order = color_order

    @classmethod
    def from_meta(cls, meta) -> NetworkInput:
        """The input of the model ``meta`` (a ModelMeta) describes."""
        return cls(meta.input_size, meta.mean, meta.std, meta.color_order)

    def __call__(self, chips: np.ndarray, flip: bool = False) -> np.ndarray:
        """One chip (H x W x 3) -> 3 x H x W, or a batch (N x H x W x 3) -> N x 3 x H x W;
        ``flip``: mirror the chips left-right first (training augmentation, flip TTA)."""
        chips = np.asarray(chips)
        if chips.ndim not in (3, 4) or chips.shape[-1] != 3:
            raise ValueError(f"expected an H x W x 3 chip or N x H x W x 3 chips, got shape "
                             f"{chips.shape}")
        if (chips.shape[-2], chips.shape[-3]) != self.size:
            chips = self._resize(chips)
        if flip:
            chips = chips[..., ::-1, :]
        if self.color_order == "rgb":
            chips = chips[..., ::-1]
        x = np.ascontiguousarray(np.moveaxis(chips, -1, -3), dtype=np.float32)
        x -= self.mean
        x *= self.inv_std
        return x

    def _resize(self, chips: np.ndarray) -> np.ndarray:
        import cv2

        shrink = chips.shape[-2] > self.size[0]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        if chips.ndim == 3:
            return cv2.resize(chips, self.size, interpolation=interpolation)
        return np.stack([cv2.resize(c, self.size, interpolation=interpolation) for c in chips])
