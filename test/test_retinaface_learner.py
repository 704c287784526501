"""RetinaFaceLearner (seed API) on a WIDER-format set built from the real photos: training lowers
the loss and raises AP, resume is exact, save/load/optimize/download keep the detections."""
import hashlib
import io
import json
import warnings

import numpy as np
import pytest
import torch

from face_perception.detection.evaluation import iou_matrix
from face_perception.detection.wider import WiderFaceDataset
from face_perception.download import DownloadError
from face_perception.imageio import read_image_bgr
from face_perception.learners import RetinaFaceLearner
from face_perception.learners.retinaface import BACKBONE_URLS, RetinaFaceLearnerError
from face_perception.types import Face
from test.wider_fixture import build_split, cut_faces

SMALL = dict(target_size=320, max_size=640, pyramid=False, flip=False, verbose=False)


@pytest.fixture(scope="module")
def wider_root(tmp_path_factory, photos):
    from face_perception.detection import Detector

    root = tmp_path_factory.mktemp("wider")
    patches = cut_faces(photos, Detector(backbone="mnet", backend="onnx"))
    build_split(root / "train", photos, patches, 16, seed=1)
    val = build_split(root / "val", photos, patches, 8, seed=2)
    # Difficulty lists as text: "easy" = faces at least 60 px wide, "hard" = every face.
    easy = [f"{s.name} " + " ".join(str(i + 1) for i in np.flatnonzero(
        s.boxes[:, 2] - s.boxes[:, 0] >= 60)) for s in val]
    (root / "val" / "wider_easy_val.txt").write_text("\n".join(easy) + "\n")
    hard = [f"{s.name} " + " ".join(str(i + 1) for i in range(len(s))) for s in val]
    (root / "val" / "wider_hard_val.txt").write_text("\n".join(hard) + "\n")
    return root


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory):
    learner = RetinaFaceLearner(backbone="mnet", device="cpu")
    return learner.download(tmp_path_factory.mktemp("models"), mode="pretrained", verbose=False)


def _learner(tmp_path, **kw):
    args = dict(backbone="mnet", device="cpu", batch_size=4, lr=0.01, log_after=0,
                temp_path=str(tmp_path), image_size=256, flip=True)
    args.update(kw)
    return RetinaFaceLearner(**args)


def test_pretrained_mnet_scores_its_recall_as_a_hand_count_gives(wider_root, pretrained_folder,
                                                                 tmp_path):
    learner = _learner(tmp_path)
    learner.load(pretrained_folder, verbose=False)
    val = WiderFaceDataset(wider_root, splits=["val"])
    result = learner.eval(val, **SMALL)
    assert 0.0 <= result["precision"] <= 1.0
    assert result["num_images"] == 8 and result["num_faces"] == sum(len(s) for s in val)
    assert result["ap"] > 0.9 and result["recall"] == 1.0
    big = sum(int((s.boxes[:, 2] - s.boxes[:, 0] >= 60).sum()) for s in val)
    assert 0 < big < result["num_faces"]
    assert result["easy"]["num_faces"] == big and result["easy"]["recall"] == 1.0
    assert result["hard"]["num_faces"] == result["num_faces"]
    assert learner.eval(val, use_subset=True, subset_size=3, **SMALL)["num_images"] == 3
    # Hand check: faces with a detection (score >= 0.02, same size rule) at IoU >= 0.5.
    found = 0
    for sample in val:
        faces = learner.infer(read_image_bgr(sample.image_path), threshold=0.02,
                              scales=[320, 640])
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        found += int((iou_matrix(sample.boxes, boxes).max(axis=1, initial=0) >= 0.5).sum())
    assert result["recall"] == pytest.approx(found / result["num_faces"])


def test_eval_with_pyramid_and_flip_tta_keeps_every_face(wider_root, pretrained_folder, tmp_path):
    learner = _learner(tmp_path)
    learner.load(pretrained_folder, verbose=False)
    val = WiderFaceDataset(wider_root, splits=["val"])
    plain = learner.eval(val, target_size=320, max_size=640, pyramid=False, flip=False,
                         verbose=False)
    tta = learner.eval(val, target_size=320, max_size=640, verbose=False)  # seed defaults: on
    assert tta["recall"] == 1.0 and tta["ap"] > 0.9
    assert tta["num_faces"] == plain["num_faces"]


def test_fit_from_pretrained_backbone_lowers_loss_and_raises_ap(wider_root, tmp_path):
    train = WiderFaceDataset(wider_root, splits=["train"])
    learner = _learner(tmp_path, epochs=0, lr=0.01, val_after=30)
    learner.fit(train, silent=True)  # zero epochs: the network with a pretrained backbone
    before = learner.eval(train, **SMALL)
    learner.epochs = 30
    stats = learner.fit(train, val_dataset=train, silent=True)
    after = learner.eval(train, **SMALL)
    losses = stats["loss"]
    assert len(losses) == 30 and np.isfinite(losses).all()
    assert np.mean(losses[-5:]) < 0.7 * losses[0]
    assert before["ap"] < 0.05
    assert after["ap"] > 0.15 and after["ap"] > before["ap"] + 0.1
    epoch, val = stats["val"][0]  # val_after=30: one validation, at the end
    assert epoch == 30 and len(stats["val"]) == 1
    assert before["ap"] < val["ap"] <= 1.0


def test_fine_tuning_the_shipped_detector_keeps_it_accurate(wider_root, pretrained_folder,
                                                            tmp_path):
    learner = _learner(tmp_path, epochs=3, lr=0.001)
    learner.load(pretrained_folder, verbose=False)
    learner.image_size = 256
    stem = learner.model.body.stage1[0][0].weight.clone()
    stats = learner.fit(WiderFaceDataset(wider_root, splits=["train"]), silent=True)
    assert max(stats["loss"]) < 5.0  # it starts near its optimum and stays there
    assert torch.equal(learner.model.body.stage1[0][0].weight, stem)  # folded-BN stem frozen
    result = learner.eval(WiderFaceDataset(wider_root, splits=["val"]), **SMALL)
    assert result["ap"] > 0.9 and result["recall"] == 1.0


def _state(learner):
    return {k: v.clone() for k, v in learner.model.state_dict().items()}


def test_resume_from_checkpoint_reproduces_uninterrupted_training(wider_root, tmp_path):
    samples = list(WiderFaceDataset(wider_root, splits=["train"]))[:6]
    kw = dict(epochs=3, image_size=128, batch_size=3, checkpoint_after_iter=1, lr=0.01,
              lr_steps="2", prefix="run")
    through = _learner(tmp_path, **kw)
    stats = through.fit(samples, silent=True)
    assert sorted(p.name for p in tmp_path.glob("run-*.pth")) == [
        "run-0001.pth", "run-0002.pth", "run-0003.pth"]
    assert stats["lr"] == pytest.approx([0.01, 0.01, 0.001])

    resumed = _learner(tmp_path, checkpoint_load_iter=2, **kw)
    stats2 = resumed.fit(samples, silent=True)
    assert stats2["loss"] == stats["loss"]
    a, b = _state(through), _state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_checkpoint_written_before_the_shared_core_still_resumes_exactly(wider_root,
                                                                          tmp_path):
    from face_perception.detection.model_folder import torch_bytes
    from face_perception.files import sha256_bytes
    from face_perception.training.checkpoint import read_checkpoint

    samples = list(WiderFaceDataset(wider_root, splits=["train"]))[:4]
    kw = dict(epochs=2, image_size=96, batch_size=2, checkpoint_after_iter=1, prefix="old")
    through = _learner(tmp_path, **kw)
    stats = through.fit(samples, silent=True)
    path = tmp_path / "old-0001.pth"
    new = read_checkpoint(path, "detection")
    # version 1 of RetinaFaceLearner: one flat dict, torch's RNG state only
    data = torch_bytes({"format": "face_perception.retinaface.checkpoint", "version": 1,
                        "backbone": "mnet", "epoch": 1, "model": new.models["model"],
                        "optimizer": new.optimizer, "torch_rng": new.rng["torch"],
                        "pretrained_bn": new.extra["pretrained_bn"],
                        "history": new.extra["history"], "seed": 0, "image_size": 96})
    path.write_bytes(data)
    (tmp_path / "old-0001.pth.sha256").write_text(sha256_bytes(data) + "\n")
    resumed = _learner(tmp_path, checkpoint_load_iter=1, **kw)
    assert resumed.fit(samples, silent=True)["loss"] == stats["loss"]
    a, b = _state(through), _state(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_data_loader_workers_do_not_change_the_training(wider_root, tmp_path):
    samples = list(WiderFaceDataset(wider_root, splits=["train"]))[:4]
    runs = []
    for workers in (0, 2):
        learner = _learner(tmp_path, epochs=1, image_size=96, batch_size=2, num_workers=workers)
        learner.fit(samples, silent=True)
        runs.append(_state(learner))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])


def test_resume_from_missing_checkpoint_names_the_file(wider_root, tmp_path):
    learner = _learner(tmp_path, checkpoint_load_iter=7, epochs=8, prefix="exp")
    with pytest.raises(FileNotFoundError, match="exp-0007.pth"):
        learner.fit(WiderFaceDataset(wider_root, splits=["train"]), silent=True)


def test_damaged_checkpoint_is_refused(wider_root, tmp_path):
    samples = list(WiderFaceDataset(wider_root, splits=["train"]))[:3]
    _learner(tmp_path, epochs=1, image_size=96, checkpoint_after_iter=1).fit(samples,
                                                                            silent=True)
    path = tmp_path / "retinaface_mnet-0001.pth"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RetinaFaceLearnerError, match="checksum mismatch"):
        _learner(tmp_path, epochs=2, image_size=96, checkpoint_load_iter=1).fit(samples,
                                                                                silent=True)


def test_save_load_round_trip_gives_identical_detections(pretrained_folder, photos, tmp_path):
    learner = _learner(tmp_path)
    learner.load(pretrained_folder, verbose=False)
    image = read_image_bgr(photos / "obama.jpg")
    faces = learner.infer(image, scales=[640, 1280])
    assert len(faces) == 1 and isinstance(faces[0], Face) and faces[0].score > 0.8

    folder = learner.save(tmp_path / "my_detector", verbose=False)
    meta = json.loads((folder / "my_detector.json").read_text())
    assert meta["backbone"] == "mnet" and meta["model_paths"] == ["my_detector.pth"]
    assert meta["sha256"]["my_detector.pth"] == hashlib.sha256(
        (folder / "my_detector.pth").read_bytes()).hexdigest()

    again = RetinaFaceLearner(backbone="resnet", device="cpu")  # backbone comes from the folder
    again.load(folder, verbose=False)
    assert again.backbone == "mnet"
    faces2 = again.infer(image, scales=[640, 1280])
    assert len(faces2) == 1
    np.testing.assert_array_equal(faces[0].box, faces2[0].box)
    assert faces[0].score == faces2[0].score

    # The saved weights drive the package's Detector (node, CLI) directly, with the same result.
    from face_perception.detection import Detector

    det = Detector(backbone="mnet", backend="torch", model_path=folder / "my_detector.pth",
                   score_threshold=0.8, target_size=640, max_size=1280, upscale=True)
    np.testing.assert_allclose(det.detect(image)[0].box, faces[0].box, atol=1e-3)

    weights = folder / "my_detector.pth"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RetinaFaceLearnerError, match="checksum mismatch"):
        RetinaFaceLearner(backbone="mnet", device="cpu").load(folder, verbose=False)


def test_optimize_runs_onnxruntime_with_the_same_faces(pretrained_folder, photos, tmp_path):
    learner = _learner(tmp_path)
    learner.load(pretrained_folder, verbose=False)
    image = read_image_bgr(photos / "biden.jpg")
    torch_faces = learner.infer(image, scales=[480, 960], mask_thresh=0.5)
    onnx_path = learner.optimize()
    assert onnx_path.is_file() and learner.onnx_path == onnx_path
    assert learner.onnx_parity < 1e-3
    onnx_faces = learner.infer(image, scales=[480, 960])
    assert len(onnx_faces) == len(torch_faces) == 1
    np.testing.assert_allclose(onnx_faces[0].box, torch_faces[0].box, atol=0.05)
    np.testing.assert_allclose(onnx_faces[0].landmarks, torch_faces[0].landmarks, atol=0.05)

    folder = learner.save(tmp_path / "opt", verbose=False)
    assert (folder / "opt.onnx").is_file()
    loaded = RetinaFaceLearner(backbone="mnet", device="cpu")
    loaded.load(folder, verbose=False)
    assert loaded.onnx_path == folder / "opt.onnx"
    again = loaded.infer(image, scales=[480, 960])
    np.testing.assert_allclose(again[0].box, onnx_faces[0].box, atol=1e-4)


def _torch_payload(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture()
def weights_server(pretrained_folder, server):
    # Serve the weights the way published checkpoints come: wrapped in "state_dict" with
    # DataParallel "module." prefixes.
    files, base = server
    state = torch.load(pretrained_folder / "retinaface_mnet.pth", weights_only=True)
    payload = _torch_payload({"state_dict": {f"module.{k}": v for k, v in state.items()}})
    files["/retinaface_mnet.pth"] = payload
    return base, hashlib.sha256(payload).hexdigest(), state


def test_download_pretrained_from_url_verifies_and_builds_a_model_folder(weights_server,
                                                                          tmp_path):
    base, sha, state = weights_server
    learner = _learner(tmp_path)
    folder = learner.download(tmp_path / "dl", mode="pretrained", verbose=False,
                              url=f"{base}/retinaface_mnet.pth", sha256=sha)
    assert folder == tmp_path / "dl" / "retinaface_mnet"
    learner.load(folder, verbose=False)
    for key, value in learner.model.state_dict().items():
        assert torch.equal(value, state[key]), key

    with pytest.raises(DownloadError, match="sha256"):
        learner.download(tmp_path / "bad", mode="pretrained", verbose=False,
                         url=f"{base}/retinaface_mnet.pth", sha256="0" * 64)
    with pytest.raises(DownloadError, match="404"):
        learner.download(tmp_path / "bad", mode="pretrained", verbose=False,
                         url=f"{base}/missing.pth", sha256=sha)


def test_download_from_unreachable_server_names_the_url(tmp_path):
    learner = _learner(tmp_path)
    url = "http://127.0.0.1:9/retinaface_resnet.pth"  # discard port: nothing listens
    with pytest.raises(DownloadError, match="127.0.0.1:9"):
        learner.download(tmp_path, mode="images", verbose=False, url=url, sha256="0" * 64)


def test_infer_takes_paths_arrays_and_seed_style_images(pretrained_folder, photos, tmp_path):
    learner = _learner(tmp_path)
    learner.load(pretrained_folder, verbose=False)

    class SeedImage:  # OpenDR's engine.data.Image exposes opencv() -> BGR HxWx3
        def __init__(self, arr):
            self._arr = arr

        def opencv(self):
            return self._arr

    image = read_image_bgr(photos / "obama2.jpg")
    by_path = learner.infer(str(photos / "obama2.jpg"), scales=[480, 960])
    by_array = learner.infer(image, scales=[480, 960])
    by_seed = learner.infer(SeedImage(image), scales=[480, 960])
    assert len(by_path) == len(by_array) == len(by_seed) == 1
    np.testing.assert_array_equal(by_path[0].box, by_seed[0].box)
    with pytest.raises(ValueError, match="uint8"):
        learner.infer(image.astype(np.float32))


def test_learner_refuses_bad_settings(tmp_path):
    with pytest.raises(ValueError, match="backbone"):
        RetinaFaceLearner(backbone="vgg", device="cpu")
    with pytest.raises(ValueError, match="lr_steps"):
        RetinaFaceLearner(lr_steps="55;68", device="cpu")
    with pytest.raises(RetinaFaceLearnerError, match="no model"):
        RetinaFaceLearner(device="cpu").infer(np.zeros((64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="mode"):
        RetinaFaceLearner(device="cpu").download(tmp_path, mode="everything")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_falls_back_to_cpu_with_a_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner = RetinaFaceLearner(backbone="mnet")  # the seed's default device='cuda'
    assert learner.device == "cpu"
    assert any("CUDA is not available" in str(w.message) for w in caught)


def _bn_stats(module):
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k}


def test_resnet_trains_from_downloaded_imagenet_backbone_or_from_scratch(
        wider_root, tmp_path, server, monkeypatch):
    from torchvision.models import resnet50

    files, base = server
    torch.manual_seed(1)
    imagenet = resnet50(weights=None).state_dict()  # stands in for torchvision's file
    payload = _torch_payload(imagenet)
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    files[f"/resnet50-{prefix}.pth"] = payload
    monkeypatch.setitem(BACKBONE_URLS, "resnet", {
        "url": f"{base}/resnet50-{prefix}.pth", "sha256_prefix": prefix,
        "filename": f"resnet50-{prefix}.pth"})
    samples = list(WiderFaceDataset(wider_root, splits=["train"]))[:2]
    args = dict(backbone="resnet", device="cpu", image_size=96, batch_size=2, log_after=0,
                temp_path=str(tmp_path), lr=0.001)

    learner = RetinaFaceLearner(epochs=0, **args)
    learner.fit(samples, silent=True)  # builds the network around the downloaded backbone
    assert (tmp_path / f"resnet50-{prefix}.pth").is_file()
    for key, value in learner.model.body.state_dict().items():
        if key != "conv1.weight":
            assert torch.equal(value, imagenet[key]), key
    # conv1 takes BGR pixels minus the mean instead of normalised RGB: 1/std, channels reversed.
    std = torch.tensor([0.229, 0.224, 0.225]) * 255
    torch.testing.assert_close(learner.model.body.conv1.weight,
                               (imagenet["conv1.weight"] / std[None, :, None, None]).flip(1))
    stem = learner.model.body.conv1.weight.clone()
    before = _bn_stats(learner.model.body)
    learner.epochs = 1
    stats = learner.fit(samples, silent=True)
    assert np.isfinite(stats["loss"]).all() and stats["iterations"] == 1
    after = _bn_stats(learner.model.body)
    assert all(torch.equal(before[k], after[k]) for k in before)  # pretrained BN kept frozen
    assert torch.equal(learner.model.body.conv1.weight, stem)  # stem frozen with its BN
    assert not torch.equal(learner.model.body.layer4[0].conv1.weight,
                           imagenet["layer4.0.conv1.weight"])  # the rest trains

    scratch = RetinaFaceLearner(epochs=1, **args)
    stats = scratch.fit(samples, from_scratch=True, silent=True)
    assert np.isfinite(stats["loss"]).all()
    fresh = _bn_stats(RetinaFaceLearner(**args)._new_model().body)
    trained = _bn_stats(scratch.model.body)
    assert any(not torch.equal(fresh[k], trained[k]) for k in fresh)  # BN learns from scratch


def test_backbone_download_with_wrong_checksum_prefix_is_removed(tmp_path, server,
                                                                 monkeypatch):
    files, base = server
    files["/resnet50-deadbeef.pth"] = b"not the weights"
    monkeypatch.setitem(BACKBONE_URLS, "resnet", {
        "url": f"{base}/resnet50-deadbeef.pth", "sha256_prefix": "deadbeef",
        "filename": "resnet50-deadbeef.pth"})
    learner = RetinaFaceLearner(backbone="resnet", device="cpu", temp_path=str(tmp_path))
    with pytest.raises(DownloadError, match="deadbeef"):
        learner.download(mode="backbone", verbose=False)
    assert not (tmp_path / "resnet50-deadbeef.pth").exists()
