"""The recognition model folder has one writer and one reader (recognition/model_folder.py):
folders in the layout earlier versions wrote still load, the model name follows the weights,
and missing or damaged files are refused naming the file."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from face_perception.alignment import ARCFACE_TEMPLATE_112
from face_perception.files import sha256_file
from face_perception.imageio import read_image_bgr
from face_perception.learners import FaceRecognitionLearner
from face_perception.recognition import Embedder
from face_perception.recognition.backbones import get_model
from face_perception.recognition.model_folder import (
    read_model_folder,
    trained_meta,
    write_model_folder,
    write_onnx_model_folder,
)
from face_perception.recognition.model_meta import ModelIntegrityError, ModelMetaError
from face_perception.recognition.pretrained import (
    CONVERSION_VERSION,
    _folder_is_current,
    convert_dlib_resnet,
    dlib_model_file,
    export_embedding_onnx,
)

SIZE, DIM = 32, 32


def small_net(seed: int = 0):
    torch.manual_seed(seed)
    return get_model("mobilefacenet", embedding_size=DIM, input_size=(SIZE, SIZE)).eval()


def chips(photos) -> np.ndarray:
    """Two 32x32 chips of the shipped photos (a fixed crop: the folder is what is tested)."""
    import cv2

    out = [cv2.resize(read_image_bgr(photos / f)[60:260, 100:300], (SIZE, SIZE),
                      interpolation=cv2.INTER_AREA) for f in ("obama.jpg", "biden.jpg")]
    return np.stack(out)


def old_layout_folder(folder, net):
    """A model folder as the code before this module wrote it (FaceRecognitionLearner.save):
    ``torch.save`` straight to backbone.pth, then backbone.json written field by field, without
    the fields added since (needs_open_set_calibration)."""
    folder.mkdir()
    torch.save({k: v.detach().cpu() for k, v in net.state_dict().items()},
               folder / "backbone.pth")
    template = (ARCFACE_TEMPLATE_112 * (SIZE / 112.0)).round(6).tolist()
    meta = {
        "name": "mobilefacenet_32_0123abcd", "architecture": "mobilefacenet",
        "embedding_size": DIM, "input_size": [SIZE, SIZE], "template": template,
        "template_name": "arcface_112", "padding": None, "template_fit": "chip",
        "color_order": "rgb", "mean": [127.5] * 3, "std": [127.5] * 3, "threshold": 0.3,
        "distance_threshold": None, "weights_file": "backbone.pth",
        "weights_sha256": sha256_file(folder / "backbone.pth"), "onnx_file": None,
        "onnx_sha256": None, "source_sha256": None, "version": "1", "source": "",
        "license": "", "architecture_kwargs": {"embedding_size": DIM,
                                               "input_size": [SIZE, SIZE]},
        "format_version": 1,
    }
    (folder / "backbone.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder


def test_folder_in_the_old_layout_loads_and_embeds_as_its_network(photos, tmp_path):
    net = small_net()
    folder = old_layout_folder(tmp_path / "old", net)
    embedder = Embedder(folder, backend="torch")
    assert embedder.meta.name == "mobilefacenet_32_0123abcd"
    x = chips(photos)
    with torch.no_grad():
        want = net(torch.from_numpy(embedder.preprocess(x))).numpy()
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_array_equal(embedder.embed_chips(x), want.astype(np.float32))
    learner = FaceRecognitionLearner(backbone="mobilefacenet", device="cpu", embedding_size=DIM,
                                     input_size=[SIZE, SIZE], temp_path=str(tmp_path))
    assert learner.load(folder).embedder.meta.name == "mobilefacenet_32_0123abcd"


def test_learner_save_keeps_a_loaded_models_name_and_writes_the_same_weights(tmp_path):
    net = small_net()
    first = write_model_folder(tmp_path / "first", net, trained_meta(
        "mobilefacenet", DIM, [SIZE, SIZE], [127.5] * 3, [127.5] * 3, "rgb"))
    learner = FaceRecognitionLearner(backbone="mobilefacenet", device="cpu", embedding_size=DIM,
                                     input_size=[SIZE, SIZE], temp_path=str(tmp_path))
    learner.load(first)
    again = learner.save(tmp_path / "again")
    a, b = read_model_folder(first).meta, read_model_folder(again).meta
    assert b.name == a.name
    # One writer: equal weights, equal bytes (the old learner save gave other bytes each time).
    assert b.weights_sha256 == a.weights_sha256


def test_model_name_follows_the_weights(tmp_path):
    def write(sub, net, name="mobilefacenet_32"):
        meta = trained_meta("mobilefacenet", DIM, [SIZE, SIZE], [127.5] * 3, [127.5] * 3, "rgb")
        meta.name = name
        return read_model_folder(write_model_folder(tmp_path / sub, net, meta)).meta

    one, same, other = write("a", small_net(0)), write("b", small_net(0)), write("c", small_net(1))
    assert one.name == same.name == f"mobilefacenet_32_{one.weights_sha256[:8]}"
    assert other.name != one.name
    # A name that already ends in a checksum gets the new one instead of a second suffix.
    renamed = write("d", small_net(1), name=one.name)
    assert renamed.name == other.name


def test_onnx_only_folder_is_named_after_its_graph_and_embeds_through_onnxruntime(photos,
                                                                                  tmp_path):
    net = small_net()
    export_embedding_onnx(net, tmp_path / "graph.onnx", (SIZE, SIZE))
    meta = trained_meta("mobilefacenet", DIM, [SIZE, SIZE], [127.5] * 3, [127.5] * 3, "rgb")
    folder = write_onnx_model_folder(tmp_path / "onnx_only",
                                     (tmp_path / "graph.onnx").read_bytes(), meta)
    model = read_model_folder(folder)
    assert model.meta.weights_file is None and model.has_onnx
    assert model.meta.name.endswith(model.meta.onnx_sha256[:8])
    embedder = Embedder(folder, backend="onnx")
    torch_embedder = Embedder(write_model_folder(tmp_path / "torch", net, meta), backend="torch")
    np.testing.assert_allclose(embedder.embed_chips(chips(photos)),
                               torch_embedder.embed_chips(chips(photos)), atol=1e-4)
    with pytest.raises(ValueError, match="ONNX graph without torch weights"):
        model.load_backbone()


def test_truncated_weights_are_refused_naming_the_file(tmp_path):
    folder = write_model_folder(tmp_path / "m", small_net(), trained_meta(
        "mobilefacenet", DIM, [SIZE, SIZE], [127.5] * 3, [127.5] * 3, "rgb"))
    weights = folder / "backbone.pth"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelIntegrityError, match=f"{weights} .*truncated"):
        Embedder(folder, backend="torch")
    learner = FaceRecognitionLearner(backbone="mobilefacenet", device="cpu", embedding_size=DIM,
                                     input_size=[SIZE, SIZE], temp_path=str(tmp_path))
    with pytest.raises(ModelIntegrityError, match=str(weights)):
        learner.load(folder)


def test_missing_files_and_metadata_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"model folder not found: {tmp_path / 'none'}"):
        read_model_folder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "empty" / "backbone.json")):
        read_model_folder(tmp_path / "empty")
    folder = write_model_folder(tmp_path / "m", small_net(), trained_meta(
        "mobilefacenet", DIM, [SIZE, SIZE], [127.5] * 3, [127.5] * 3, "rgb"))
    (folder / "backbone.pth").unlink()
    with pytest.raises(FileNotFoundError, match=str(folder / "backbone.pth")):
        read_model_folder(folder).verify()
    meta = json.loads((folder / "backbone.json").read_text())
    meta["weights_file"] = None
    (folder / "backbone.json").write_text(json.dumps(meta))
    with pytest.raises(ModelMetaError, match="records no model file"):
        read_model_folder(folder)


def test_dlib_conversion_writes_through_the_one_writer_and_keeps_its_name(tmp_path):
    dat = dlib_model_file()
    folder = convert_dlib_resnet(dat, tmp_path / "dlib")
    model = read_model_folder(folder)
    model.verify()
    assert model.meta.name == "dlib_resnet"  # the name galleries made with it carry
    assert model.meta.version == CONVERSION_VERSION
    assert model.meta.source_sha256 == sha256_file(dat)
    assert _folder_is_current(folder, sha256_file(dat))
    onnx = folder / "backbone.onnx"
    onnx.write_bytes(onnx.read_bytes()[:-10])  # a cut file makes the cache convert again
    assert not _folder_is_current(folder, sha256_file(dat))


def test_learner_records_the_colour_order_and_normalisation_of_a_state_dict(tmp_path):
    torch.save(small_net().state_dict(), tmp_path / "weights.pth")
    learner = FaceRecognitionLearner(backbone="mobilefacenet", device="cpu", embedding_size=DIM,
                                     input_size=[SIZE, SIZE], temp_path=str(tmp_path),
                                     rgb_mean=[0.1, 0.5, 0.9], rgb_std=[0.2, 0.4, 0.8],
                                     color_order="bgr")
    learner.load_state_dict_file(tmp_path / "weights.pth", folder=tmp_path / "m")
    meta = read_model_folder(tmp_path / "m").meta
    # The trained-model metadata of training: the network's channel order, mean/std in it.
    assert meta.color_order == "bgr"
    np.testing.assert_allclose(meta.mean, [0.9 * 255, 0.5 * 255, 0.1 * 255])
    np.testing.assert_allclose(meta.std, [0.8 * 255, 0.4 * 255, 0.2 * 255])
    assert meta.template_name == "arcface_scaled"
    assert meta.name == f"mobilefacenet_{DIM}_{meta.weights_sha256[:8]}"
