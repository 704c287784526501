"""ResNet-50/101/152 adapted to 112x112 face chips, with an embedding head.

Face variant (as in face.evoLVe): a 3x3 stride-1 stem keeps more resolution than ImageNet's 7x7
stride-2 stem, the usual bottleneck stages follow, and the classifier is replaced by the
embedding head BN -> dropout -> flatten -> FC -> BN.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from face_perception.recognition.backbones.iresnet import _check_input_size, _init_weights

STAGE_BLOCKS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride) -> 1x1 expand, each with BN; ReLU after the sum."""

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * EXPANSION
        self.residual = nn.Sequential(
            nn.Conv2d(in_ch, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.Conv2d(width, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch),
        )
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.residual(x) + self.shortcut(x))


class FaceResNet(nn.Module):
    """(N, 3, H, W) normalised chips -> (N, embedding_size) embeddings."""

    def __init__(self, depth: int = 50, embedding_size: int = 512,
                 input_size: Sequence[int] = (112, 112), dropout: float = 0.0) -> None:
        super().__init__()
        if depth not in STAGE_BLOCKS:
            raise ValueError(f"ResNet depth must be one of {sorted(STAGE_BLOCKS)}, got {depth!r}")
        w, h = _check_input_size(input_size)
        self.depth, self.embedding_size = depth, int(embedding_size)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1))
        blocks = []
        in_ch = 64
        for stage, (width, count) in enumerate(zip((64, 128, 256, 512), STAGE_BLOCKS[depth])):
            for i in range(count):
                stride = 2 if (i == 0 and stage > 0) else 1
                blocks.append(Bottleneck(in_ch, width, stride))
                in_ch = width * EXPANSION
        self.body = nn.Sequential(*blocks)
        # Max pool + three stride-2 stages: 112 -> 7.
        self.head = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(in_ch * (h // 16) * (w // 16), self.embedding_size),
            nn.BatchNorm1d(self.embedding_size),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def resnet_50(**kw) -> FaceResNet:
    return FaceResNet(50, **kw)


def resnet_101(**kw) -> FaceResNet:
    return FaceResNet(101, **kw)


def resnet_152(**kw) -> FaceResNet:
    return FaceResNet(152, **kw)
