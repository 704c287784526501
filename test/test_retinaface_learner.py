"""RetinaFaceLearner (seed API) on a WIDER-format set built from the real photos: training lowers
the loss and raises AP, resume is exact, save/load/optimize/download keep the detections."""
import hashlib
import http.server
import io
import json
import threading
import warnings

import numpy as np
import pytest
import torch

from face_perception.detection.evaluation import iou_matrix
from face_perception.detection.wider import WiderFaceDataset
from face_perception.download import DownloadError
from face_perception.imageio import read_image_bgr
from face_perception.learners import RetinaFaceLearner
from face_perception.learners.retinaface import RetinaFaceLearnerError
from face_perception.types import Face
from test.wider_fixture import build_split, cut_faces

SMALL = dict(target_size=320, max_size=640, pyramid=False, flip=False, verbose=False)


@pytest.fixture(scope="module")
def wider_root(tmp_path_factory, photos):
    from face_perception.detection import Detector

    root = tmp_path_factory.mktemp("wider")
    patches = cut_faces(photos, Detector(backbone="mnet", backend="onnx"))
    build_split(root / "train", photos, patches, 16, seed=1)
    build_split(root / "val", photos, patches, 8, seed=2)
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
    # Hand check: faces with a detection (score >= 0.02, same size rule) at IoU >= 0.5.
    found = 0
    for sample in val:
        faces = learner.infer(read_image_bgr(sample.image_path), threshold=0.02,
                              scales=[320, 640])
        boxes = np.array([f.box for f in faces]).reshape(-1, 4)
        found += int((iou_matrix(sample.boxes, boxes).max(axis=1, initial=0) >= 0.5).sum())
    assert result["recall"] == pytest.approx(found / result["num_faces"])


@pytest.mark.timeout(300)
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


def _state(learner):
    return {k: v.clone() for k, v in learner.model.state_dict().items()}


@pytest.mark.timeout(300)
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

    weights = folder / "my_detector.pth"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(RetinaFaceLearnerError, match="checksum mismatch"):
        RetinaFaceLearner(backbone="mnet", device="cpu").load(folder, verbose=False)


@pytest.mark.timeout(180)
def test_optimize_runs_onnxruntime_with_the_same_faces(pretrained_folder, photos, tmp_path):
    learner = _learner(tmp_path)
    learner.load(pretrained_folder, verbose=False)
    image = read_image_bgr(photos / "biden.jpg")
    torch_faces = learner.infer(image, scales=[480, 960], mask_thresh=0.5)
    onnx_path = learner.optimize()
    assert onnx_path.is_file() and learner.onnx_path == onnx_path
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


class _WeightsHandler(http.server.BaseHTTPRequestHandler):
    payload = b""

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path != "/retinaface_mnet.pth":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture()
def weights_server(pretrained_folder):
    # Serve the weights the way published checkpoints come: wrapped in "state_dict" with
    # DataParallel "module." prefixes.
    state = torch.load(pretrained_folder / "retinaface_mnet.pth", weights_only=True)
    buffer = io.BytesIO()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, buffer)
    handler = type("Handler", (_WeightsHandler,), {"payload": buffer.getvalue()})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hashlib.sha256(
        handler.payload).hexdigest(), state
    httpd.shutdown()


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
