"""The one ONNX export path: atomic, and kept only when onnxruntime agrees with torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_perception.onnx.export import ExportError, export_checked, onnx_difference

AXES = {"input": {0: "batch"}, "out": {0: "batch"}}


def small_net(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()


def inputs():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((n, 3, 16, 16)).astype(np.float32) for n in (1, 3)]


def test_export_checked_writes_a_graph_that_matches_torch_for_any_batch(tmp_path):
    net = small_net(0)
    path = tmp_path / "net.onnx"
    diff = export_checked(net, path, torch.zeros(2, 3, 16, 16), inputs(), 1e-5, ["input"],
                          ["out"], AXES)
    assert path.is_file() and diff < 1e-5
    assert onnx_difference(net, path, inputs()) == diff
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]  # no temporary file left


def test_a_graph_that_disagrees_is_refused_with_figures_and_nothing_is_replaced(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"previous export")
    with pytest.raises(ExportError, match=r"differs from torch by [0-9.e-]+ .*\(1, 3, 16, 16\), "
                                          r"\(3, 3, 16, 16\); tolerance 1e-05\); not written"):
        # The reference has other weights: what a wrong export would look like.
        export_checked(small_net(0), path, torch.zeros(2, 3, 16, 16), inputs(), 1e-5,
                       ["input"], ["out"], AXES, reference=small_net(1))
    assert path.read_bytes() == b"previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["net.onnx"]
