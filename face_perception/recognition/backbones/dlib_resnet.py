"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in PyTorch.

The network is dlib's ``anet_type`` from ``dnn_face_recognition_ex.cpp``: a 29-conv ResNet on
150x150 RGB chips, 128-d output. Details that matter for exact parity with dlib:

* convolutions with stride 2 have NO padding (dlib's template default ``padding = stride != 1 ?
  0 : size/2``); 3x3 convolutions with stride 1 pad by 1.
* every ``affine`` layer (batch norm frozen to a per-channel scale and shift) directly follows a
  convolution with a bias, so it is folded into that convolution here.
* a down-sampling residual adds ``avg_pool(2x2, stride 2)`` of its input to the block output.
  The two differ in channels (the input has fewer) and sometimes in size (8x8 -> 3x3 block vs
  4x4 pool), and dlib's ``add_prev`` then zero-extends both to the larger shape (channels and
  rows/columns appended at the end) before adding. :func:`_add_zero_extended` does the same.
* input normalisation (in the Embedder, from the model metadata): RGB, ``(pixel - avg) / 256``
  with the file's per-channel averages (122.782, 117.001, 104.298).

The forward pass returns dlib's raw descriptor (not L2-normalised), so it can be compared with
``dlib.face_recognition_model_v1.compute_face_descriptor`` number for number.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from face_perception.recognition.dlib_format import DlibNetwork, LayerSpec, layer

# (filters, number of residual units, first unit down-samples), input side first:
# alevel4 .. alevel0 of anet_type.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))
INPUT_SIZE = 150
EMBEDDING_SIZE = 128


def _conv_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


def _add_zero_extended(a: torch.Tensor, b: torch.Tensor, shape: tuple[int, int, int],
                       a_shape: tuple[int, int, int],
                       b_shape: tuple[int, int, int]) -> torch.Tensor:
    """a + b after zero-extending both (C, H, W) to ``shape`` at the far end, like dlib."""

    def extend(t, s):
        pads = (0, shape[2] - s[2], 0, shape[1] - s[1], 0, shape[0] - s[0])
        return F.pad(t, pads) if any(pads) else t

    return extend(a, a_shape) + extend(b, b_shape)


class DlibResidual(nn.Module):
    """One ``ares`` / ``ares_down`` unit: conv-relu-conv (+ shortcut), then relu."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, in_size: int):
        super().__init__()
        self.down = down
        stride = 2 if down else 1
        pad = 0 if down else 1
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, pad, bias=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=True)
        block_size = _conv_out(in_size, 3, stride, pad)
        pool_size = _conv_out(in_size, 2, 2, 0) if down else in_size
        self.out_size = max(block_size, pool_size)
        # static shapes keep the ONNX graph free of shape arithmetic
        self._block_shape = (out_channels, block_size, block_size)
        self._short_shape = (in_channels, pool_size, pool_size)
        self._out_shape = (max(in_channels, out_channels), self.out_size, self.out_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, 2, 2) if self.down else x
        if self._block_shape == self._short_shape:
            return F.relu(y + shortcut)
        return F.relu(_add_zero_extended(shortcut, y, self._out_shape, self._short_shape,
                                         self._block_shape))


class DlibResNet(nn.Module):
    """dlib's face ResNet. Input: N x 3 x 150 x 150 float, RGB, ``(pixel - avg) / 256``."""

    def __init__(self, embedding_size: int = EMBEDDING_SIZE, input_size: int = INPUT_SIZE):
        super().__init__()
        self.input_size = input_size
        self.stem = nn.Conv2d(3, 32, 7, 2, 0, bias=True)
        size = _conv_out(_conv_out(input_size, 7, 2, 0), 3, 2, 0)
        units = []
        channels = 32
        for filters, count, first_down in STAGES:
            for i in range(count):
                unit = DlibResidual(channels, filters, first_down and i == 0, size)
                units.append(unit)
                size, channels = unit.out_size, filters
        self.units = nn.ModuleList(units)
        self.fc = nn.Linear(channels, embedding_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.stem(x)), 3, 2)
        for unit in self.units:
            x = unit(x)
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def dlib_conv_order(self) -> list[nn.Conv2d]:
        """The convolutions in the order dlib's file stores them (input side first)."""
        convs = [self.stem]
        for unit in self.units:
            convs += [unit.conv1, unit.conv2]
        return convs


def anet_spec() -> list[LayerSpec]:
    """dlib's ``anet_type`` as a layer list, outermost (loss) first, for the file parser."""

    def block(n, stride, sub):
        return [layer("affine"), layer("con", num_filters=n, nr=3, nc=3, stride=1),
                layer("relu"), layer("affine"),
                layer("con", num_filters=n, nr=3, nc=3, stride=stride)] + sub

    def ares(n, sub):
        return [layer("relu"), layer("add_prev", tag=1)] + block(n, 1, [layer("tag", id=1)] + sub)

    def ares_down(n, sub):
        return ([layer("relu"), layer("add_prev", tag=2),
                 layer("avg_pool", nr=2, nc=2, stride=2), layer("skip", id=1),
                 layer("tag", id=2)] + block(n, 2, [layer("tag", id=1)] + sub))

    net = [layer("max_pool", nr=3, nc=3, stride=2), layer("relu"), layer("affine"),
           layer("con", num_filters=32, nr=7, nc=7, stride=2),
           layer("input_rgb_image_sized", size=INPUT_SIZE)]
    for filters, count, first_down in STAGES:  # input side first, so wrap outward
        for i in range(count):
            net = ares_down(filters, net) if (first_down and i == 0) else ares(filters, net)
    return [layer("loss_metric"), layer("fc", num_outputs=EMBEDDING_SIZE, no_bias=True),
            layer("avg_pool", nr=0, nc=0, stride=1)] + net


def state_dict_from_dlib(network: DlibNetwork) -> dict[str, torch.Tensor]:
    """Map a parsed dlib network onto :class:`DlibResNet`, folding each affine into its conv."""
    model = DlibResNet()
    learned = network.learned()
    convs = model.dlib_conv_order()
    expected = ["con", "affine"] * len(convs) + ["fc"]
    kinds = [p.kind for p in learned]
    if kinds != expected:
        raise ValueError(f"dlib network has learned layers {kinds}, DlibResNet needs {expected}")
    names = {id(m): n for n, m in model.named_modules()}
    state: dict[str, torch.Tensor] = {}
    for i, conv in enumerate(convs):
        con, aff = learned[2 * i].params, learned[2 * i + 1].params
        gamma = aff["gamma"].astype(np.float64)
        weight = con["weight"].astype(np.float64) * gamma[:, None, None, None]
        bias = con["bias"].astype(np.float64) * gamma + aff["beta"].astype(np.float64)
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise ValueError(f"conv {i}: dlib weight {weight.shape} vs {tuple(conv.weight.shape)}")
        state[f"{names[id(conv)]}.weight"] = torch.from_numpy(weight.astype(np.float32))
        state[f"{names[id(conv)]}.bias"] = torch.from_numpy(bias.astype(np.float32))
    fc = learned[-1].params["weight"]  # (num_inputs, num_outputs): dlib computes x @ W
    state["fc.weight"] = torch.from_numpy(np.ascontiguousarray(fc.T))
    model.load_state_dict(state)  # raises on any missing/unexpected key
    return state
