"""Embedder: metadata-driven preprocessing, batching, input checks, model folders and cache."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from face_perception.recognition import Embedder, ModelMeta
from face_perception.recognition.model_meta import (
    ModelIntegrityError,
    ModelMetaError,
    cosine_threshold_from_distance,
)
from face_perception.recognition.pretrained import ensure_pretrained, resolve_model
from face_perception.types import Face
from test.dlib_reference import dlib_reference


@pytest.fixture(scope="module")
def onnx_embedder():
    return Embedder("dlib_resnet", backend="onnx")


@pytest.fixture(scope="module")
def chips(photos):
    names = ("obama.jpg", "obama2.jpg", "biden.jpg")
    return np.stack([dlib_reference(photos, n)[2][..., ::-1] for n in names])


def test_dlib_meta_describes_dlibs_input(onnx_embedder):
    meta = onnx_embedder.meta
    assert meta.model_id == "dlib_resnet" and meta.embedding_size == 128
    assert meta.input_size == (150, 150) and meta.color_order == "rgb"
    np.testing.assert_allclose(meta.mean, (122.782, 117.001, 104.298), atol=1e-3)
    assert meta.std == (256.0, 256.0, 256.0)
    assert meta.distance_threshold == pytest.approx(0.6)
    assert 0.85 < meta.threshold < 0.95
    assert meta.weights_sha256 and meta.onnx_sha256 and meta.source_sha256


def test_preprocess_swaps_to_rgb_and_normalises(onnx_embedder):
    chip = np.zeros((1, 150, 150, 3), np.uint8)
    chip[..., 0] = 255  # pure blue in BGR
    x = onnx_embedder.preprocess(chip)
    assert x.shape == (1, 3, 150, 150) and x.dtype == np.float32
    np.testing.assert_allclose(x[0, :, 0, 0], [(0 - 122.782) / 256, (0 - 117.001) / 256,
                                               (255 - 104.298) / 256], atol=1e-5)


def test_batches_are_chunked_and_lists_accepted(chips):
    small = Embedder("dlib_resnet", backend="onnx", batch_size=2)
    whole = small.embed_chips(chips)
    assert whole.shape == (3, 128) and whole.dtype == np.float32
    as_list = small.embed_chips([c for c in chips])
    np.testing.assert_allclose(as_list, whole, atol=1e-6)
    one_by_one = np.concatenate([small.embed_chips(c) for c in chips])
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)
    assert small.embed_chips([]).shape == (0, 128)


def test_torch_and_onnx_backends_agree(chips, onnx_embedder):
    torch_emb = Embedder("dlib_resnet", backend="torch").embed_chips(chips)
    np.testing.assert_allclose(torch_emb, onnx_embedder.embed_chips(chips), atol=1e-5)


@pytest.mark.parametrize("bad, message", [
    (np.zeros((2, 112, 112, 3), np.uint8), "needs N x 150 x 150 x 3"),
    (np.zeros((150, 150), np.uint8), "needs N x 150 x 150 x 3"),
    (np.zeros((1, 150, 150, 4), np.uint8), "needs N x 150 x 150 x 3"),
    (np.zeros((1, 150, 150, 3), np.float32), "must be uint8"),
    ([np.zeros((150, 150, 3), np.uint8), np.zeros((10, 10, 3), np.uint8)], "chip 1 has shape"),
    ("chip.jpg", "must be an ndarray"),
])
def test_wrong_chips_are_refused_with_a_clear_error(onnx_embedder, bad, message):
    with pytest.raises(ValueError, match=message):
        onnx_embedder.embed_chips(bad)


def test_embed_faces_needs_landmarks(onnx_embedder):
    image = np.zeros((200, 200, 3), np.uint8)
    face = Face(box=[10, 10, 100, 100], score=0.9, landmarks=None)
    with pytest.raises(ValueError, match="has no landmarks"):
        onnx_embedder.embed_faces(image, [face])
    assert onnx_embedder.embed_faces(image, []).shape == (0, 128)


def test_unknown_model_backend_or_device_is_refused(tmp_path):
    with pytest.raises(ValueError, match="neither a pretrained name"):
        Embedder("no_such_model")
    with pytest.raises(ValueError, match="backend must be"):
        Embedder("dlib_resnet", backend="tensorrt")
    with pytest.raises(ValueError, match="device must be"):
        Embedder("dlib_resnet", device="tpu")
    with pytest.raises(FileNotFoundError, match="backbone.json"):
        Embedder(tmp_path)


def test_cuda_request_falls_back_to_cpu_with_a_warning():
    import onnxruntime
    import torch

    if torch.cuda.is_available() or "CUDAExecutionProvider" in \
            onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA; the fallback path is for machines without it")
    for backend in ("onnx", "torch"):
        with pytest.warns(RuntimeWarning, match="CUDA requested"):
            emb = Embedder("dlib_resnet", backend=backend, device="cuda")
        assert emb.device == "cpu"


def test_model_folder_without_onnx_is_exported_once(tmp_path, chips, onnx_embedder):
    # A user model folder holding only weights + JSON (as training saves it).
    src = resolve_model("dlib_resnet")
    folder = tmp_path / "my_dlib"
    folder.mkdir()
    shutil.copy(src / "backbone.pth", folder)
    meta = ModelMeta.load(src)
    meta.name, meta.onnx_file, meta.onnx_sha256 = "my_dlib", None, None
    meta.save(folder)
    emb = Embedder(folder, backend="onnx")
    assert emb.meta.name == "my_dlib"
    np.testing.assert_allclose(emb.embed_chips(chips), onnx_embedder.embed_chips(chips),
                               atol=1e-5)


def test_altered_weights_are_refused(tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(resolve_model("dlib_resnet"), folder)
    data = bytearray((folder / "backbone.pth").read_bytes())
    data[-100] ^= 0xFF
    (folder / "backbone.pth").write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="does not match the sha256"):
        Embedder(folder, backend="torch")


def test_model_files_without_a_recorded_sha256_are_refused(tmp_path):
    # One rule for every model folder reader (see also the learner's load test).
    folder = tmp_path / "model"
    shutil.copytree(resolve_model("dlib_resnet"), folder)
    meta = ModelMeta.load(folder)
    meta.weights_sha256 = None
    meta.save(folder)
    with pytest.raises(ModelIntegrityError, match=r"records no weights_sha256 for .*backbone.pth"):
        Embedder(folder, backend="torch")
    meta.weights_sha256 = ModelMeta.load(resolve_model("dlib_resnet")).weights_sha256
    meta.onnx_sha256 = None
    meta.save(folder)
    with pytest.raises(ModelIntegrityError, match=r"records no onnx_sha256 for .*backbone.onnx"):
        Embedder(folder, backend="onnx")
    assert Embedder(folder, backend="torch").embedding_size == 128


def test_pretrained_cache_is_reconverted_when_a_file_changes(tmp_path):
    folder = ensure_pretrained("dlib_resnet", folder=tmp_path / "cache")
    meta = ModelMeta.load(folder)
    before = (folder / "backbone.onnx").stat().st_mtime_ns
    assert ensure_pretrained("dlib_resnet", folder=folder) == folder
    assert (folder / "backbone.onnx").stat().st_mtime_ns == before  # verified, not redone
    (folder / "backbone.onnx").write_bytes(b"garbage")
    ensure_pretrained("dlib_resnet", folder=folder)
    from face_perception.files import sha256_file

    assert sha256_file(folder / "backbone.onnx") == meta.onnx_sha256


def test_meta_json_round_trip_and_validation(tmp_path):
    meta = ModelMeta.arcface_112("mfn_test", "mobilefacenet", embedding_size=128,
                                 threshold=0.35)
    meta.save(tmp_path)
    loaded = ModelMeta.load(tmp_path)
    assert loaded.to_dict() == meta.to_dict()
    assert loaded.input_size == (112, 112) and loaded.template_name == "arcface_112"
    data = json.loads((tmp_path / "backbone.json").read_text())
    for field, value, message in [("color_order", "rgba", "color_order"),
                                  ("std", [1, 0, 1], "std values must be positive"),
                                  ("template", [[0, 0]] * 4, "template must be 5x2"),
                                  ("threshold", 3.0, "threshold is a cosine"),
                                  ("colour", "rgb", "unknown fields")]:
        bad = dict(data, **{field: value})
        (tmp_path / "backbone.json").write_text(json.dumps(bad))
        with pytest.raises(ModelMetaError, match=message):
            ModelMeta.load(tmp_path)
    (tmp_path / "backbone.json").write_text("{not json")
    with pytest.raises(ModelMetaError, match="not readable JSON"):
        ModelMeta.load(tmp_path)


def test_dlib_distance_threshold_maps_to_cosine():
    # unit vectors: |a-b| = 0.6 <=> cos = 0.82; dlib's raw descriptors have length ~1.385
    assert cosine_threshold_from_distance(0.6) == pytest.approx(0.82)
    assert cosine_threshold_from_distance(0.6, 1.385) == pytest.approx(0.9062, abs=1e-4)
    a = np.array([1.385, 0.0])
    b = 1.385 * np.array([0.9062, np.sqrt(1 - 0.9062 ** 2)])
    assert np.linalg.norm(a - b) == pytest.approx(0.6, abs=1e-3)


def test_embed_faces_embeds_every_face_of_a_photo(photos, onnx_embedder):
    import cv2

    from face_perception.detection import Detector
    from face_perception.imageio import read_image_bgr

    # Two people side by side in one frame, as a camera would see them.
    left, right = (cv2.resize(read_image_bgr(photos / n), (400, 500))
                   for n in ("obama.jpg", "biden.jpg"))
    frame = np.hstack([left, right])
    faces = sorted(Detector().detect(frame), key=lambda f: f.box[0])
    assert len(faces) == 2
    emb = onnx_embedder.embed_faces(frame, faces)
    assert emb.shape == (2, 128)
    one = onnx_embedder.embed_chips(onnx_embedder.align(frame, faces[0].landmarks))
    np.testing.assert_allclose(emb[0], one[0], atol=1e-5)
    obama2 = Detector().detect(read_image_bgr(photos / "obama2.jpg"))[0]
    ref = onnx_embedder.embed_faces(read_image_bgr(photos / "obama2.jpg"), [obama2])[0]
    threshold = onnx_embedder.meta.threshold
    assert emb[0] @ ref > threshold > emb[1] @ ref
