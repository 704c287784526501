"""Specifications of the RetinaFace ONNX export: dynamic batch/height/width and parity."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from face_perception.detection import export, weights
from face_perception.detection.priors import prior_count
from face_perception.detection.retinaface import RetinaFace


@pytest.fixture(scope="module")
def pretrained_mnet():
    net = RetinaFace("mnet").eval()
    net.load_state_dict(weights.mnet_state_dict())
    return net


def test_export_has_dynamic_axes_and_matches_torch_at_several_sizes(pretrained_mnet, tmp_path,
                                                                     photos):
    import cv2
    import onnxruntime as ort

    path = export.export_onnx(pretrained_mnet, tmp_path / "mnet.onnx", opset=17)
    model = onnx.load(str(path))
    assert model.opset_import[0].version == 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == ["loc", "conf", "landmarks"]
    # Random inputs of other batch sizes and odd sizes than the export sample (320x320).
    assert export.check_parity(pretrained_mnet, path,
                               sizes=[(1, 480, 640), (3, 163, 217), (2, 97, 301)]) < 1e-4
    # A real photo, and conf comes out as probabilities.
    img = cv2.resize(cv2.imread(str(photos / "obama.jpg")), (455, 569))
    blob = cv2.dnn.blobFromImage(img, 1.0, None, (104, 117, 123), False, False)
    assert export.check_parity(pretrained_mnet, path, inputs=[blob]) < 1e-4
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    loc, conf, lms = session.run(None, {"input": np.repeat(blob, 2, axis=0)})
    assert conf.shape == (2, prior_count(569, 455), 2)
    np.testing.assert_allclose(conf.sum(-1), 1.0, atol=1e-5)
    assert conf[..., 1].max() > 0.99


def test_resnet_exports_with_parity(tmp_path):
    torch.manual_seed(0)
    net = RetinaFace("resnet").eval()
    path = export.export_onnx(net, tmp_path / "r50.onnx", sample_size=(128, 128))
    # Untrained: outputs reach the thousands, so compare relative to their magnitude.
    assert export.check_parity(net, path, sizes=[(1, 96, 160), (2, 75, 91)],
                               relative=True) < 1e-4


def test_checked_export_keeps_only_a_graph_within_tolerance(pretrained_mnet, tmp_path):
    path = tmp_path / "mnet.onnx"
    diff = export.export_checked_onnx(pretrained_mnet, path)
    assert path.is_file() and 0 < diff < 1e-4  # folded batch norm: float rounding only
    with pytest.raises(export.ExportError, match=r"differs from torch by .*tolerance 0\); "
                                                 "not written"):
        export.export_checked_onnx(pretrained_mnet, tmp_path / "strict.onnx", tolerance=0.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mnet.onnx"]


def test_export_refuses_opsets_without_dynamic_shape_support(pretrained_mnet, tmp_path):
    with pytest.raises(export.ExportError, match="opset 11"):
        export.export_onnx(pretrained_mnet, tmp_path / "old.onnx", opset=11)


def test_cached_export_is_checksummed_and_rebuilt_when_damaged(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_PERCEPTION_CACHE", str(tmp_path))
    path = export.cached_onnx_for("mnet")
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.is_file()
    assert export.cached_onnx_for("mnet") == path
    path.write_bytes(path.read_bytes()[:5000])
    rebuilt = export.cached_onnx_for("mnet")
    assert rebuilt == path and onnx.load(str(path)).graph.output[1].name == "conf"
