"""YuNet-n face detector: the network (batch norm folded, inference only) and its decoding.

YuNet (libfacedetection.train, Apache-2.0) is an anchor-free detector of 73,873 inference
parameters: a stride-2 stem, stages of "point-depth" units (a 1x1 convolution followed by a 3x3
depthwise convolution), a top-down pyramid over strides 8/16/32 and one small head per stride.
Each head predicts, for every feature-map cell, a class and an objectness probability, a box
(centre offset and log size in units of the stride) and 5 landmarks (offsets in units of the
stride), with the cell's top-left corner as the anchor point.

Input: raw BGR pixels 0..255 as float32, N x 3 x H x W with H and W multiples of ``STRIDE_ALIGN``
(pad bottom/right with zeros, as YuNet was trained). Outputs, in this order and with the
published graph's names: ``cls_8 cls_16 cls_32 obj_8 obj_16 obj_32 bbox_8 bbox_16 bbox_32 kps_8
kps_16 kps_32``, each N x (H/s * W/s) x C, cells in row-major order.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

STRIDES = (8, 16, 32)
# Four 2x poolings after a stride-2 stem: inputs must divide by 32.
STRIDE_ALIGN = 32
OUTPUT_KINDS = ("cls", "obj", "bbox", "kps")
OUTPUT_NAMES = [f"{kind}_{s}" for kind in OUTPUT_KINDS for s in STRIDES]
INPUT_NAME = "input"
CHANNELS = 64  # width of every stage after the first, of the pyramid and the heads


class PointDepth(nn.Module):
    """1x1 convolution then 3x3 depthwise convolution (batch norm folded into its bias),
    optionally followed by ReLU."""

    def __init__(self, cin: int, cout: int, relu: bool = True):
        super().__init__()
        self.point = nn.Conv2d(cin, cout, 1)
        self.depth = nn.Conv2d(cout, cout, 3, padding=1, groups=cout)
        self.relu = relu

    def forward(self, x):
        x = self.depth(self.point(x))
        return F.relu(x) if self.relu else x


class Stem(nn.Module):
    """3x3 stride-2 convolution (batch norm folded) + ReLU, then one point-depth unit."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.unit = PointDepth(16, 16)

    def forward(self, x):
        return self.unit(F.relu(self.conv(x)))


class Head(nn.Module):
    """Per-stride heads: a shared unit, then class, objectness, box and landmark predictors."""

    def __init__(self, levels: int = len(STRIDES)):
        super().__init__()
        self.share = nn.ModuleList(PointDepth(CHANNELS, CHANNELS) for _ in range(levels))
        self.cls = nn.ModuleList(PointDepth(CHANNELS, 1, relu=False) for _ in range(levels))
        self.obj = nn.ModuleList(PointDepth(CHANNELS, 1, relu=False) for _ in range(levels))
        self.bbox = nn.ModuleList(PointDepth(CHANNELS, 4, relu=False) for _ in range(levels))
        self.kps = nn.ModuleList(PointDepth(CHANNELS, 10, relu=False) for _ in range(levels))

    def forward(self, feats):
        shared = [unit(f) for unit, f in zip(self.share, feats)]
        out = []
        for kind in OUTPUT_KINDS:
            for unit, f in zip(getattr(self, kind), shared):
                y = unit(f)
                y = y.permute(0, 2, 3, 1).reshape(y.shape[0], -1, y.shape[1])
                out.append(torch.sigmoid(y) if kind in ("cls", "obj") else y)
        return out


class YuNet(nn.Module):
    """YuNet-n (see the module docstring); ``forward`` returns the 12 outputs of OUTPUT_NAMES."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        widths = [(16, 16, 64)] + [(CHANNELS, CHANNELS, CHANNELS)] * 4
        self.stages = nn.ModuleList(
            nn.Sequential(PointDepth(cin, mid), PointDepth(mid, cout)) for cin, mid, cout in widths)
        # Top-down pyramid: lateral[i] refines level i after the coarser level was added.
        self.lateral = nn.ModuleList(PointDepth(CHANNELS, CHANNELS) for _ in STRIDES)
        self.head = Head()

    def forward(self, x):
        x = F.max_pool2d(self.stem(x), 2)                   # stride 4
        x = self.stages[1](self.stages[0](x))
        c3 = self.stages[2](F.max_pool2d(x, 2))             # stride 8
        c4 = self.stages[3](F.max_pool2d(c3, 2))            # stride 16
        c5 = self.stages[4](F.max_pool2d(c4, 2))            # stride 32
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4 + F.interpolate(p5, scale_factor=2.0, mode="nearest"))
        p3 = self.lateral[0](c3 + F.interpolate(p4, scale_factor=2.0, mode="nearest"))
        return self.head([p3, p4, p5])


def aligned_size(height: int, width: int) -> tuple[int, int]:
    """The network input size holding a ``height`` x ``width`` image (rounded up to 32)."""
    up = STRIDE_ALIGN
    return (-(-height // up) * up, -(-width // up) * up)


@lru_cache(maxsize=16)
def anchor_points(net_h: int, net_w: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) anchor points (x, y: each cell's top-left corner in input pixels) and (P, 1)
    strides, in output order (stride 8 cells row-major, then 16, then 32)."""
    points, strides = [], []
    for s in STRIDES:
        ys, xs = np.mgrid[:net_h // s, :net_w // s]
        points.append(np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32) * s)
        strides.append(np.full((xs.size, 1), s, np.float32))
    return np.concatenate(points), np.concatenate(strides)


def group_outputs(outputs) -> list[np.ndarray]:
    """The 12 per-stride outputs of one batch as 4 arrays (cls, obj, bbox, kps), each
    N x P x C with the strides concatenated in anchor_points' order."""
    n = len(STRIDES)
    return [np.concatenate(outputs[k * n:(k + 1) * n], axis=1) for k in range(len(OUTPUT_KINDS))]


def face_scores(cls: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Face score of each cell: geometric mean of class and objectness probabilities, so that
    it reads on the same 0..1 scale as one probability (RetinaFace's softmax)."""
    return np.sqrt(np.clip(cls[:, 0], 0.0, 1.0) * np.clip(obj[:, 0], 0.0, 1.0))


def decode(bbox: np.ndarray, kps: np.ndarray, points: np.ndarray,
           strides: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (P, 4: x1, y1, x2, y2) and landmarks (P, 10) in network-input pixels from the
    raw box (centre offset, log size) and landmark offsets of the cells at ``points``."""
    centre = bbox[:, :2] * strides + points
    half = np.exp(bbox[:, 2:]) * strides / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    lms = (kps.reshape(-1, 5, 2) * strides[:, None] + points[:, None]).reshape(-1, 10)
    return boxes.astype(np.float32), lms.astype(np.float32)
