"""The same Embedder serves ArcFace-style 112x112 models, driven only by their backbone.json."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from face_perception.alignment import ARCFACE_TEMPLATE_112
from face_perception.files import sha256_file
from face_perception.recognition import Embedder, ModelMeta
from face_perception.recognition.backbones import get_model


@pytest.fixture(scope="module")
def mfn_folder(tmp_path_factory):
    """A MobileFaceNet model folder as training writes it: backbone.pth + backbone.json."""
    torch.manual_seed(0)
    model = get_model("mobilefacenet", embedding_size=128, input_size=(112, 112)).eval()
    folder = tmp_path_factory.mktemp("mfn")
    torch.save(model.state_dict(), folder / "backbone.pth")
    meta = ModelMeta.arcface_112("mfn_test", "mobilefacenet", embedding_size=128,
                                 threshold=0.35,
                                 weights_sha256=sha256_file(folder / "backbone.pth"))
    meta.save(folder)
    return folder, model


@pytest.fixture(scope="module")
def chips():
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, (3, 112, 112, 3), dtype=np.uint8)


def reference(model, chips_bgr, color_order="rgb"):
    """What the metadata says the network should see, computed by hand."""
    x = chips_bgr[..., ::-1] if color_order == "rgb" else chips_bgr
    x = (x.astype(np.float32) - 127.5) / 127.5
    with torch.no_grad():
        y = model(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_arcface_model_folder_embeds_like_its_metadata_says(mfn_folder, chips, tmp_path,
                                                            monkeypatch):
    folder, model = mfn_folder
    monkeypatch.setenv("FACE_PERCEPTION_CACHE", str(tmp_path / "cache"))
    expected = reference(model, chips)
    for backend in ("torch", "onnx"):
        emb = Embedder(folder, backend=backend)
        assert emb.meta.model_id == "mfn_test" and emb.embedding_size == 128
        out = emb.embed_chips(chips)
        assert out.shape == (3, 128) and out.dtype == np.float32
        np.testing.assert_allclose(out, expected, atol=1e-4)
    # the ONNX export went to the cache, keyed by the weights' checksum
    assert list((tmp_path / "cache" / "recognition" / "onnx").glob("mfn_test-*.onnx"))


def test_colour_order_comes_from_the_metadata(mfn_folder, chips, tmp_path):
    folder, model = mfn_folder
    bgr_folder = tmp_path / "bgr"
    bgr_folder.mkdir()
    (bgr_folder / "backbone.pth").write_bytes((folder / "backbone.pth").read_bytes())
    meta = ModelMeta.load(folder)
    meta.color_order = "bgr"
    meta.save(bgr_folder)
    out = Embedder(bgr_folder, backend="torch").embed_chips(chips)
    np.testing.assert_allclose(out, reference(model, chips, "bgr"), atol=1e-4)
    assert np.abs(out - reference(model, chips, "rgb")).max() > 1e-3


def test_arcface_model_aligns_to_the_112_template(mfn_folder):
    folder, _ = mfn_folder
    emb = Embedder(folder, backend="torch")
    image = np.zeros((300, 300, 3), np.uint8)
    chip = emb.align(image, ARCFACE_TEMPLATE_112 * 2 + 20)
    assert chip.shape == (112, 112, 3)
    with pytest.raises(ValueError, match="needs N x 112 x 112 x 3"):
        emb.embed_chips(np.zeros((1, 150, 150, 3), np.uint8))


def test_weights_of_another_architecture_are_refused(mfn_folder, tmp_path):
    folder, _ = mfn_folder
    other = tmp_path / "wrong"
    other.mkdir()
    (other / "backbone.pth").write_bytes((folder / "backbone.pth").read_bytes())
    meta = ModelMeta.load(folder)
    meta.architecture = "ir_50"
    meta.save(other)
    with pytest.raises(ValueError, match="does not fit architecture 'ir_50'"):
        Embedder(other, backend="torch")
