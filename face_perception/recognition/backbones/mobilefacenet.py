"""MobileFaceNet (Chen et al. 2018): a ~1M-parameter embedding network for 112x112 chips.

Inverted-residual bottlenecks as in MobileNetV2 with PReLU, then a 1x1 expansion to 512 channels,
a global depthwise conv (GDConv 7x7) instead of average pooling, and a linear 1x1 projection to the
embedding with BN.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from face_perception.recognition.backbones.iresnet import _check_input_size, _init_weights

# (expansion t, output channels c, repeats n, first stride s), from the paper's Table 1.
BOTTLENECK_SETTINGS = (
    (2, 64, 5, 2),
    (4, 128, 1, 2),
    (2, 128, 6, 1),
    (4, 128, 1, 2),
    (2, 128, 2, 1),
)


class ConvBN(nn.Sequential):
    """Conv -> BN -> optional PReLU; ``groups=in_ch`` makes it depthwise."""

    def __init__(self, in_ch: int, out_ch: int, kernel, stride: int = 1, padding=0,
                 groups: int = 1, act: bool = True) -> None:
        layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, padding, groups=groups, bias=False),
                  nn.BatchNorm2d(out_ch)]
        if act:
            layers.append(nn.PReLU(out_ch))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.use_residual = stride == 1 and in_ch == out_ch
        self.block = nn.Sequential(
            ConvBN(in_ch, hidden, 1),
            ConvBN(hidden, hidden, 3, stride, 1, groups=hidden),
            ConvBN(hidden, out_ch, 1, act=False),  # linear bottleneck
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileFaceNet(nn.Module):
    """(N, 3, H, W) normalised chips -> (N, embedding_size) embeddings."""

    def __init__(self, embedding_size: int = 512, input_size: Sequence[int] = (112, 112),
                 dropout: float = 0.0) -> None:
        super().__init__()
        w, h = _check_input_size(input_size)
        self.embedding_size = int(embedding_size)
        layers = [ConvBN(3, 64, 3, 2, 1), ConvBN(64, 64, 3, 1, 1, groups=64)]
        in_ch = 64
        for t, c, n, s in BOTTLENECK_SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(in_ch, c, s if i == 0 else 1, t))
                in_ch = c
        layers.append(ConvBN(in_ch, 512, 1))
        self.body = nn.Sequential(*layers)
        # Four stride-2 steps: 112 -> 7; GDConv covers the whole remaining map.
        kernel = (h // 16, w // 16)
        self.head = nn.Sequential(
            ConvBN(512, 512, kernel, groups=512, act=False),
            nn.Dropout(dropout),
            nn.Conv2d(512, self.embedding_size, 1, bias=False),
            nn.BatchNorm2d(self.embedding_size),
            nn.Flatten(),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def mobilefacenet(**kw) -> MobileFaceNet:
    return MobileFaceNet(**kw)
