"""The RetinaFace network in PyTorch: backbone (MobileNet-0.25 or ResNet-50), FPN, SSH, heads.

``RetinaFace(cfg)(x)`` takes a BGR image batch minus the mean (N, 3, H, W), float32, and returns
``(loc, conf, landmarks)`` of shapes (N, P, 4), (N, P, 2), (N, P, 10) for the P priors of
``priors.prior_boxes(H, W)``:

- ``conf`` holds LOGITS in training mode (``model.train()``; the loss applies its own
  log-softmax) and SOFTMAX probabilities (background, face) in eval mode, which is also what the
  ONNX export contains.
- ``loc`` and ``landmarks`` are regressions relative to the priors (see ``box_utils.decode``).

Parameter names follow the published RetinaFace checkpoints (``body.*``, ``fpn.*``, ``ssh1.*``,
``ClassHead.*``, ...), so their state dicts load without renaming.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from face_perception.detection.config import fpn_in_channels, get_config, leaky_slope

ANCHORS_PER_CELL = 2


def conv_bn(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            leaky: float = 0.0, act: bool = True) -> nn.Sequential:
    """Conv (no bias) + BatchNorm [+ LeakyReLU]; index 0 conv, 1 BN, 2 activation."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.LeakyReLU(negative_slope=leaky, inplace=True))
    return nn.Sequential(*layers)


def conv_dw(cin: int, cout: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """MobileNet depthwise-separable block: 3x3 depthwise + 1x1 pointwise, each with BN."""
    return nn.Sequential(
        conv_bn(cin, cin, 3, stride, groups=cin, leaky=leaky),
        conv_bn(cin, cout, 1, 1, leaky=leaky),
    )


class MobileNetV1(nn.Module):
    """MobileNet v1 at width 0.25 (8..256 channels), split in three stages (strides 8, 16, 32)."""

    def __init__(self):
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 3, 2, leaky=0.1),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            conv_dw(64, 128, 2),
            *[conv_dw(128, 128, 1) for _ in range(5)],
        )
        self.stage3 = nn.Sequential(
            conv_dw(128, 256, 2),
            conv_dw(256, 256, 1),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


class ResNet50Body(nn.Module):
    """torchvision ResNet-50 (random init) up to layer4, returning layer2/3/4 outputs.

    Attribute names match torchvision's, so ImageNet or RetinaFace checkpoints load directly.
    """

    def __init__(self):
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1, net.layer2, net.layer3, net.layer4)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer2(self.layer1(x))
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c2, c3, c4]


class FPN(nn.Module):
    """Top-down feature pyramid: 1x1 lateral convs, nearest upsampling, 3x3 merge convs."""

    def __init__(self, in_channels: list[int], out_channels: int, leaky: float):
        super().__init__()
        self.output1 = conv_bn(in_channels[0], out_channels, 1, leaky=leaky)
        self.output2 = conv_bn(in_channels[1], out_channels, 1, leaky=leaky)
        self.output3 = conv_bn(in_channels[2], out_channels, 1, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, 3, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, 3, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1 = self.output1(feats[0])
        o2 = self.output2(feats[1])
        o3 = self.output3(feats[2])
        # Upsample to the exact size of the finer map: odd input sizes make it not exactly 2x.
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single-stage headless context module: parallel 3x3, 5x5 and 7x7 receptive fields
    (the larger ones as stacked 3x3 convs sharing their first layer), concatenated."""

    def __init__(self, in_channels: int, out_channels: int, leaky: float):
        super().__init__()
        if out_channels % 4:
            raise ValueError(f"SSH output channels must be divisible by 4, got {out_channels}")
        quarter = out_channels // 4
        self.conv3X3 = conv_bn(in_channels, out_channels // 2, 3, act=False)
        self.conv5X5_1 = conv_bn(in_channels, quarter, 3, leaky=leaky)
        self.conv5X5_2 = conv_bn(quarter, quarter, 3, act=False)
        self.conv7X7_2 = conv_bn(quarter, quarter, 3, leaky=leaky)
        self.conv7x7_3 = conv_bn(quarter, quarter, 3, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3 = self.conv3X3(x)
        shared = self.conv5X5_1(x)
        branch5 = self.conv5X5_2(shared)
        branch7 = self.conv7x7_3(self.conv7X7_2(shared))
        return F.relu(torch.cat([branch3, branch5, branch7], dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``per_anchor`` values for each anchor of each cell."""

    def __init__(self, in_channels: int, per_anchor: int, anchors: int = ANCHORS_PER_CELL):
        super().__init__()
        self.per_anchor = per_anchor
        self.conv1x1 = nn.Conv2d(in_channels, anchors * per_anchor, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)  # cells row-major, then anchors: prior order
        return out.reshape(out.shape[0], -1, self.per_anchor)


class RetinaFace(nn.Module):
    """RetinaFace detector network; see the module docstring for inputs and outputs."""

    def __init__(self, cfg: dict | str = "mnet"):
        super().__init__()
        if isinstance(cfg, str):
            cfg = get_config(cfg)
        self.cfg = cfg
        if cfg["name"] == "mobilenet0.25":
            self.body = MobileNetV1()
        elif cfg["name"] == "Resnet50":
            self.body = ResNet50Body()
        else:
            raise ValueError(f"unknown backbone name in config: {cfg['name']!r}")
        out = cfg["out_channel"]
        leaky = leaky_slope(cfg)
        self.fpn = FPN(fpn_in_channels(cfg), out, leaky)
        self.ssh1 = SSH(out, out, leaky)
        self.ssh2 = SSH(out, out, leaky)
        self.ssh3 = SSH(out, out, leaky)
        levels = len(cfg["steps"])
        self.ClassHead = nn.ModuleList([_Head(out, 2) for _ in range(levels)])
        self.BboxHead = nn.ModuleList([_Head(out, 4) for _ in range(levels)])
        self.LandmarkHead = nn.ModuleList([_Head(out, 10) for _ in range(levels)])

    def forward(self, x: torch.Tensor):
        feats = self.fpn(self.body(x))
        feats = [self.ssh1(feats[0]), self.ssh2(feats[1]), self.ssh3(feats[2])]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        conf = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        landmarks = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        if not self.training:
            conf = F.softmax(conf, dim=-1)
        return loc, conf, landmarks

    @torch.no_grad()
    def fuse_batchnorm(self) -> RetinaFace:
        """Fold every BatchNorm into the preceding conv (inference only; returns self).

        Gives the same outputs with fewer kernels; the fused model can no longer be trained.
        """
        self.eval()
        for module in list(self.modules()):
            if isinstance(module, nn.Sequential) and len(module) >= 2 \
                    and isinstance(module[0], nn.Conv2d) and isinstance(module[1], nn.BatchNorm2d):
                module[0] = torch.nn.utils.fusion.fuse_conv_bn_eval(module[0].eval(),
                                                                    module[1].eval())
                module[1] = nn.Identity()
        if isinstance(self.body, ResNet50Body):
            self.body.conv1 = torch.nn.utils.fusion.fuse_conv_bn_eval(self.body.conv1,
                                                                      self.body.bn1)
            self.body.bn1 = nn.Identity()
            for block in [*self.body.layer1, *self.body.layer2, *self.body.layer3,
                          *self.body.layer4]:
                for conv_name, bn_name in (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3")):
                    setattr(block, conv_name, torch.nn.utils.fusion.fuse_conv_bn_eval(
                        getattr(block, conv_name), getattr(block, bn_name)))
                    setattr(block, bn_name, nn.Identity())
                # block.downsample is a (conv, BN) Sequential: already fused by the loop above.
        return self


def build_model(backbone: str = "mnet") -> RetinaFace:
    """An untrained RetinaFace for ``backbone`` ('mnet' or 'resnet')."""
    return RetinaFace(get_config(backbone))
