"""Embedding backbones: registry, output shapes, published parameter counts, ONNX export."""
import numpy as np
import pytest
import torch

from face_perception.recognition.backbones import BACKBONE_NAMES, get_model


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def n_params_of(name, **kw):
    # Built on the meta device: shapes only, no memory or initialisation cost.
    with torch.device("meta"):
        return n_params(get_model(name, **kw))


def test_registry_lists_every_seed_backbone_and_dlib():
    expected = {"ir_50", "ir_101", "ir_152", "ir_se_50", "ir_se_101", "ir_se_152", "resnet_50",
                "resnet_101", "resnet_152", "mobilefacenet", "dlib_resnet"}
    assert expected <= set(BACKBONE_NAMES)


def test_unknown_backbone_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown backbone 'ir_9'.*ir_50.*mobilefacenet"):
        get_model("ir_9")


def test_bad_input_size_is_refused():
    with pytest.raises(ValueError, match="multiples of 16"):
        get_model("mobilefacenet", input_size=(100, 100))


@pytest.mark.parametrize("name", ["ir_50", "ir_se_50", "resnet_50", "mobilefacenet"])
def test_backbone_maps_112_chips_to_embeddings(name):
    torch.manual_seed(0)
    model = get_model(name, embedding_size=256).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 256)
    assert torch.isfinite(out).all()
    # Different inputs give different embeddings (the network is not degenerate).
    assert not torch.allclose(out[0], out[1])


def test_parameter_counts_match_published_sizes():
    # IR-50 with a 512-d embedding: 43.6M (ArcFace / face.evoLVe); IR-SE adds the SE blocks;
    # MobileFaceNet with 128-d: 0.99M (Chen et al. 2018, Table 2).
    assert n_params_of("ir_50") / 1e6 == pytest.approx(43.6, abs=0.2)
    assert 43.6e6 < n_params_of("ir_se_50") < 44.2e6
    assert n_params_of("mobilefacenet", embedding_size=128) / 1e6 == pytest.approx(0.99, abs=0.03)
    ir101, ir152 = n_params_of("ir_101"), n_params_of("ir_152")
    assert 60e6 < ir101 < ir152 < 75e6
    r50, r101, r152 = (n_params_of(f"resnet_{d}") for d in (50, 101, 152))
    assert r50 < r101 < r152


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's note on the legacy exporter
def test_mobilefacenet_exports_to_onnx_with_same_outputs(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = get_model("mobilefacenet").eval()
    x = torch.randn(3, 3, 112, 112)
    path = tmp_path / "mfn.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["input"],
                      output_names=["embedding"], dynamic_axes={"input": {0: "n"}},
                      opset_version=17)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        ref = model(x).numpy()
    assert got.shape == (3, 512)
    assert np.abs(got - ref).max() < 1e-4
