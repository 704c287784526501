"""IR and IR-SE residual networks (ArcFace "improved residual" units) for 112x112 face chips.

The layout follows the published IR-50/100/152 family used by ArcFace and face.evoLVe: a 3x3 stem
with PReLU, four stages of BN-conv-PReLU-conv-BN units (optionally with squeeze-and-excitation),
and an output head BN -> dropout -> flatten -> FC -> BN that produces the embedding.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

# Units per stage; stage widths are 64, 128, 256, 512 for every depth. 18, 34 and 200 are the
# depths of InsightFace's arcface_torch (r18/r34/r200) and AdaFace (IR-18/34) that importers need.
STAGE_UNITS = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    101: (3, 13, 30, 3),
    152: (3, 8, 36, 3),
    200: (6, 26, 60, 6),
}
STAGE_WIDTHS = (64, 128, 256, 512)


class SqueezeExcite(nn.Module):
    """Channel attention: global pool -> bottleneck 1x1 convs -> sigmoid gate."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, 1, bias=False)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return x * w


class IRUnit(nn.Module):
    """Improved residual unit; the stride sits on the second conv, as in ArcFace's IR.

    Two published variants differ from face.evoLVe's unit (the default): ``mid_bn`` adds a BN
    between the first conv and the PReLU (arcface_torch's IBasicBlock, AdaFace's BasicBlockIR),
    and ``projection_shortcut`` gives every strided unit a 1x1 conv + BN shortcut even when the
    width stays (arcface_torch); both are needed to load those weights unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, use_se: bool,
                 mid_bn: bool = False, projection_shortcut: bool = False) -> None:
        super().__init__()
        if in_ch == out_ch and not (projection_shortcut and stride != 1):
            # Identity or spatial subsampling only: a 1x1 max pool with stride keeps it free.
            self.shortcut = nn.MaxPool2d(1, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        layers = [nn.BatchNorm2d(in_ch), nn.Conv2d(in_ch, out_ch, 3, 1, 1, bias=False)]
        if mid_bn:
            layers.append(nn.BatchNorm2d(out_ch))
        layers += [
            nn.PReLU(out_ch),
            nn.Conv2d(out_ch, out_ch, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_ch),
        ]
        if use_se:
            layers.append(SqueezeExcite(out_ch))
        self.residual = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.residual(x)


class IResNet(nn.Module):
    """IR / IR-SE backbone: (N, 3, H, W) normalised chips -> (N, embedding_size) embeddings.

    ``mid_bn`` and ``projection_shortcut``: the unit variants of other code bases (IRUnit);
    the defaults are face.evoLVe's layout, which this package trains.
    """

    def __init__(self, depth: int = 50, use_se: bool = False, embedding_size: int = 512,
                 input_size: Sequence[int] = (112, 112), dropout: float = 0.0,
                 mid_bn: bool = False, projection_shortcut: bool = False) -> None:
        super().__init__()
        if depth not in STAGE_UNITS:
            raise ValueError(f"IR depth must be one of {sorted(STAGE_UNITS)}, got {depth!r}")
        input_size = _check_input_size(input_size)
        self.depth, self.use_se, self.embedding_size = depth, use_se, int(embedding_size)
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64))
        units = []
        in_ch = 64
        for width, count in zip(STAGE_WIDTHS, STAGE_UNITS[depth]):
            for i in range(count):
                units.append(IRUnit(in_ch, width, 2 if i == 0 else 1, use_se, bool(mid_bn),
                                    bool(projection_shortcut)))
                in_ch = width
        self.body = nn.Sequential(*units)
        # Four stride-2 stages: 112 -> 7.
        out_h, out_w = input_size[1] // 16, input_size[0] // 16
        self.head = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(512 * out_h * out_w, self.embedding_size),
            nn.BatchNorm1d(self.embedding_size),
        )
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def _check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """(width, height); both must be multiples of 16 and at least 32 (four stride-2 stages)."""
    try:
        w, h = (int(v) for v in input_size)
    except (TypeError, ValueError):
        raise ValueError(f"input_size must be (width, height), got {input_size!r}") from None
    if w < 32 or h < 32 or w % 16 or h % 16:
        raise ValueError(f"input_size must be multiples of 16 and >= 32, got {input_size!r}")
    return w, h


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def ir_18(**kw) -> IResNet:
    return IResNet(18, False, **kw)


def ir_34(**kw) -> IResNet:
    return IResNet(34, False, **kw)


def ir_50(**kw) -> IResNet:
    return IResNet(50, False, **kw)


def ir_101(**kw) -> IResNet:
    return IResNet(101, False, **kw)


def ir_152(**kw) -> IResNet:
    return IResNet(152, False, **kw)


def ir_200(**kw) -> IResNet:
    return IResNet(200, False, **kw)


def ir_se_50(**kw) -> IResNet:
    return IResNet(50, True, **kw)


def ir_se_101(**kw) -> IResNet:
    return IResNet(101, True, **kw)


def ir_se_152(**kw) -> IResNet:
    return IResNet(152, True, **kw)
