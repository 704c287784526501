"""``init_from``: training starts from a published arcface_torch / AdaFace backbone, built in
that layout (arcface_torch's units have a mid BN and projection shortcuts; AdaFace's a mid BN),
and the trained folder records the layout so the Embedder loads it back. Nothing downloaded:
the published files are the package's own IResNet written in the foreign key layout, as in
test_model_import.py."""
import numpy as np
import pytest
import torch

from face_perception.recognition import Embedder
from face_perception.recognition.backbones.iresnet import IResNet
from face_perception.recognition.model_import import ModelImportError, import_model
from face_perception.recognition.model_meta import ModelMeta
from face_perception.recognition.training import TrainConfig, Trainer
from test import training_data
from test.test_model_import import arcface_torch_state_dict, body_state_dict, randomise

DIM = 64  # a small embedding keeps IR-18's last linear layer small


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("init_from")
    return training_data.build(root, photos, size=112, synthetic=4, per_identity=2, held_out=0,
                               chips={})[0]


@pytest.fixture(scope="module")
def chips(photos):
    """ArcFace 112x112 chips (BGR uint8) of the shipped frontal photos."""
    from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template
    from test.face_crops import detected_faces

    return np.stack([align_to_template(image, lm, ARCFACE_TEMPLATE_112, (112, 112), fit="chip")
                     for image, lm in detected_faces(photos).values()])


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory):
    """An arcface_torch r18 backbone.pth (its key names, mid BN, projection shortcuts)."""
    torch.manual_seed(11)
    net = randomise(IResNet(18, embedding_size=DIM, mid_bn=True, projection_shortcut=True), 11)
    path = tmp_path_factory.mktemp("published") / "backbone.pth"
    torch.save(arcface_torch_state_dict(net), path)
    return path


def _cfg(train_dir, temp, fmt, path, **kw):
    args = dict(device="cpu", backbone="ir_18", network_head="arcface", input_size=[112, 112],
                embedding_size=DIM, iters=1, batch_size=4, lr=1e-9, momentum=0.0,
                weight_decay=0.0, stages=[], num_workers=0, dataset=str(train_dir),
                temp_path=str(temp), silent=True, threads=1,
                init_from={"format": fmt, "path": str(path)})
    return TrainConfig(**{**args, **kw})


def _embed(net, embedder, chips) -> np.ndarray:
    with torch.no_grad():
        out = net.eval()(torch.from_numpy(embedder.preprocess(chips)))
    return torch.nn.functional.normalize(out, dim=1).numpy()


def test_training_starts_from_the_arcface_torch_weights_and_the_folder_loads_back(
        train_dir, arcface_file, chips, tmp_path):
    imported = Embedder(import_model(arcface_file, "arcface-torch", tmp_path / "imported"),
                        backend="torch")
    trainer = Trainer(_cfg(train_dir, tmp_path / "run", "arcface-torch", arcface_file))
    start, _, _, _, _, color = trainer.build_backbone()
    assert color == "rgb"
    # the starting network gives the checkpoint's embeddings (as imported) on real faces
    np.testing.assert_allclose(_embed(start, imported, chips), imported.embed_chips(chips),
                               rtol=0, atol=1e-5)
    stats = trainer.fit()
    # one step at lr 1e-9: every weight is still the published one (the step only moved the
    # batch-norm running statistics)
    published = dict(start.named_parameters())
    for name, p in trainer.backbone.named_parameters():
        torch.testing.assert_close(p.detach(), published[name].detach(), rtol=0, atol=1e-6,
                                   msg=name)
    folder = stats["model_folder"]
    meta = ModelMeta.load(folder)
    assert meta.architecture == "ir_18" and meta.color_order == "rgb"
    assert meta.architecture_kwargs == {"embedding_size": DIM, "input_size": [112, 112],
                                        "mid_bn": True, "projection_shortcut": True}
    trained = Embedder(folder, backend="torch")
    np.testing.assert_allclose(trained.embed_chips(chips),
                               _embed(trainer.backbone, trained, chips), rtol=0, atol=1e-5)


def test_an_adaface_checkpoint_starts_a_bgr_run_in_its_layout(train_dir, chips, tmp_path):
    torch.manual_seed(12)
    net = randomise(IResNet(18, embedding_size=DIM, mid_bn=True), 12)
    path = tmp_path / "adaface_ir18.ckpt"
    state = {f"model.{k}": v for k, v in body_state_dict(net, "se_block").items()}
    torch.save({"state_dict": state}, path)
    imported = Embedder(import_model(path, "adaface", tmp_path / "imported"), backend="torch")
    trainer = Trainer(_cfg(train_dir, tmp_path / "run", "adaface", path, color_order="bgr"))
    start, dim, size, mean, std, color = trainer.build_backbone()
    assert (dim, size, color) == (DIM, [112, 112], "bgr")
    assert mean == std == [127.5] * 3
    assert start.body[0].residual[2].__class__.__name__ == "BatchNorm2d"  # mid BN
    np.testing.assert_allclose(_embed(start, imported, chips), imported.embed_chips(chips),
                               rtol=0, atol=1e-5)
    # AdaFace's weights see BGR: an RGB run is refused naming the setting
    with pytest.raises(ValueError, match="color_order 'rgb'"):
        Trainer(_cfg(train_dir, tmp_path / "rgb", "adaface", path)).fit()
    assert not (tmp_path / "rgb").exists()


@pytest.mark.parametrize("case, error, message", [
    ("missing", FileNotFoundError, "checkpoint not found: .*nowhere.pth"),
    ("wrong_format", ModelImportError, "backbone.pth is not an AdaFace checkpoint"),
    ("wrong_backbone", ModelImportError, "holds an ir_18 .* set backbone: ir_18"),
    ("wrong_size", ValueError, "embedding_size 128 \\(the file's: 64\\)"),
])
def test_a_wrong_init_from_stops_the_run_before_anything_is_written(
        train_dir, arcface_file, tmp_path, case, error, message):
    fmt, path, kw = "arcface-torch", arcface_file, {}
    if case == "missing":
        path = tmp_path / "nowhere.pth"
    elif case == "wrong_format":
        fmt = "adaface"
    elif case == "wrong_backbone":
        kw = {"backbone": "ir_50"}
    else:
        kw = {"embedding_size": 128}
    with pytest.raises(error, match=message):
        Trainer(_cfg(train_dir, tmp_path / "run", fmt, path, **kw)).fit()
    assert not (tmp_path / "run").exists()


def test_init_from_settings_are_checked_with_the_config(train_dir, arcface_file, tmp_path):
    with pytest.raises(ValueError, match="init_from must be .*arcface-torch | adaface"):
        _cfg(train_dir, tmp_path, "onnx", arcface_file)
    with pytest.raises(ValueError, match="does not combine with init_model"):
        _cfg(train_dir, tmp_path, "arcface-torch", arcface_file, mode="finetune",
             init_model=str(tmp_path))


def test_the_learner_passes_init_from_and_sample_rate_to_training(train_dir, arcface_file,
                                                                    tmp_path):
    """FaceRecognitionLearner(init_from=, sample_rate=): fit starts from the published weights
    (one step at lr 1e-9 leaves them in place) and a bad value is refused by TrainConfig."""
    from face_perception.learners import FaceRecognitionLearner
    from face_perception.recognition.model_folder import load_backbone

    folder = import_model(arcface_file, "arcface-torch", tmp_path / "imported")
    published = dict(load_backbone(folder, ModelMeta.load(folder)).named_parameters())
    learner = FaceRecognitionLearner(
        device="cpu", backbone="ir_18", network_head="arcface", mode="full", iters=1,
        batch_size=4, lr=1e-9, momentum=0.0, weight_decay=0.0, stages=[], num_workers=0,
        embedding_size=DIM, temp_path=str(tmp_path / "run"), threads=1, sample_rate=0.5,
        init_from={"format": "arcface-torch", "path": str(arcface_file)})
    assert learner.sample_rate == 0.5
    learner.fit(str(train_dir), silent=True)
    # one step at lr 1e-9: every weight is still the published one (batch-norm running
    # statistics move, as in the test above)
    for name, p in learner.backbone_model.named_parameters():
        torch.testing.assert_close(p.detach(), published[name].detach(), rtol=0, atol=1e-6,
                                   msg=name)
    with pytest.raises(ValueError, match="sample_rate must be in"):
        FaceRecognitionLearner(device="cpu", sample_rate=1.5)
