"""YuNet-n: our module and shipped weights against the published graph, our export, decoding, and
the faces, landmarks and names it gives on the real photos next to RetinaFace mnet."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.detection import yunet as Y
from face_perception.detection import yunet_weights as W
from face_perception.detection.evaluation import iou_matrix

PUBLISHED = Path(__file__).parent / "data" / "yunet" / "yunet_n_dynamic.onnx"
PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg",
          "obama_partial_face2.jpg"]


@pytest.fixture(scope="module")
def yunet():
    return Detector(backbone="yunet", num_threads=2)


def _photo_blob(photos: Path, name: str) -> np.ndarray:
    img = cv2.imread(str(photos / name))
    scale = 640 / max(img.shape[:2])
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = Y.aligned_size(*img.shape[:2])
    padded = np.zeros((h, w, 3), np.uint8)
    padded[:img.shape[0], :img.shape[1]] = img
    return np.ascontiguousarray(padded.transpose(2, 0, 1)[None], np.float32)


def test_shipped_weights_reproduce_the_published_graph_on_photos(photos):
    import onnxruntime as ort
    import torch

    net = W.build_model()
    session = ort.InferenceSession(str(PUBLISHED), providers=["CPUExecutionProvider"])
    for name in PHOTOS:
        blob = _photo_blob(photos, name)
        ref = session.run(Y.OUTPUT_NAMES, {"input": blob})
        with torch.inference_mode():
            ours = [t.numpy() for t in net(torch.from_numpy(blob))]
        for out_name, a, b in zip(Y.OUTPUT_NAMES, ref, ours):
            assert a.shape == b.shape, out_name
            assert np.abs(a - b).max() < 1e-4, (name, out_name, float(np.abs(a - b).max()))


def test_converting_the_published_onnx_gives_the_shipped_weights():
    state = W.onnx_to_state_dict(PUBLISHED.read_bytes())
    with np.load(W.WEIGHTS_FILE, allow_pickle=False) as shipped:
        assert sorted(shipped.files) == sorted(state)
        for key in state:
            np.testing.assert_array_equal(shipped[key], state[key], err_msg=key)
    assert W.sha256_file(PUBLISHED) == W.SOURCE_ONNX_SHA256


def test_damaged_weights_are_refused_with_the_path(tmp_path):
    bad = tmp_path / "yunet_n.npz"
    data = bytearray(W.WEIGHTS_FILE.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(W.YuNetWeightsError, match="checksum mismatch.*yunet_n.npz"):
        W.load_state_dict(bad, expected_sha256=W.WEIGHTS_SHA256)
    with pytest.raises(W.YuNetWeightsError, match="not found"):
        W.load_state_dict(tmp_path / "missing.npz")


def test_export_matches_torch_and_runs_like_the_published_graph(tmp_path, photos):
    import onnxruntime as ort

    path = tmp_path / "yunet.onnx"
    diff = W.export_onnx(path)
    assert diff <= W.PARITY_TOLERANCE
    ours = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    published = ort.InferenceSession(str(PUBLISHED), providers=["CPUExecutionProvider"])
    blob = _photo_blob(photos, "obama.jpg")
    for a, b in zip(ours.run(Y.OUTPUT_NAMES, {"input": blob}),
                    published.run(Y.OUTPUT_NAMES, {"input": blob})):
        assert np.abs(a - b).max() < 1e-4


def test_decode_puts_a_zero_prediction_on_its_cell_with_the_stride_as_size():
    points, strides = Y.anchor_points(64, 96)
    assert len(points) == (8 * 12) + (4 * 6) + (2 * 3)
    k = 8 * 12 + 7  # stride 16, row 1, column 1
    assert points[k].tolist() == [16.0, 16.0] and strides[k, 0] == 16
    bbox = np.zeros((1, 4), np.float32)
    kps = np.tile(np.array([[1.0, 0.5]], np.float32), (1, 5))
    boxes, lms = Y.decode(bbox, kps, points[k:k + 1], strides[k:k + 1])
    np.testing.assert_allclose(boxes[0], [8, 8, 24, 24])
    np.testing.assert_allclose(lms[0].reshape(5, 2), [[32, 24]] * 5)
    assert Y.aligned_size(480, 640) == (480, 640) and Y.aligned_size(481, 1) == (512, 32)


def test_yunet_finds_the_face_mnet_finds_with_the_same_landmark_order(photos, core_detector,
                                                                      yunet):
    for name in PHOTOS:
        img = cv2.imread(str(photos / name))
        (ref,) = core_detector.detect(img)
        faces = yunet.detect(img)
        assert len(faces) == 1, (name, faces)
        face = faces[0]
        assert iou_matrix(face.box, ref.box)[0, 0] > 0.8, name
        eye_gap = np.linalg.norm(ref.landmarks[1] - ref.landmarks[0])
        err = np.linalg.norm(face.landmarks - ref.landmarks, axis=1) / eye_gap
        # Left eye of the image first, as Face defines: a swapped pair would be ~1 eye gap off.
        assert err.max() < 0.25, (name, err.round(3))


def test_yunet_faces_get_the_same_names_as_mnet_faces(photos, core_detector, yunet,
                                                      dlib_embedder, enroll):
    from face_perception.recognition import Recognizer

    rec = Recognizer(dlib_embedder, enroll())
    for name in PHOTOS:
        img = cv2.imread(str(photos / name))
        ref_faces, faces = core_detector.detect(img), yunet.detect(img)
        ref_names = [c.name if c else None for c in rec.identify(img, ref_faces)]
        names = [c.name if c else None for c in rec.identify(img, faces)]
        assert names == ref_names and names[0] in ("obama", "biden"), name
        a, b = rec.embed(img, ref_faces)[0], rec.embed(img, faces)[0]
        # The same person's chips aligned from either detector's landmarks (dlib: same-person
        # distances 0.33-0.43, different people 0.82-0.87).
        assert np.linalg.norm(a - b) < 0.3, (name, float(np.linalg.norm(a - b)))


def test_batch_torch_and_onnx_give_the_same_faces(photos, yunet):
    imgs = [cv2.imread(str(photos / n)) for n in ("obama.jpg", "biden.jpg", "obama2.jpg")]
    torch_det = Detector(backbone="yunet", backend="torch")
    for img, batch_faces in zip(imgs, yunet.detect_batch(imgs)):
        single, by_torch = yunet.detect(img), torch_det.detect(img)
        assert len(single) == len(batch_faces) == len(by_torch) == 1
        np.testing.assert_allclose(by_torch[0].box, single[0].box, atol=0.05)
        # Batch pads to the largest image: only the padding differs, faces stay put.
        assert iou_matrix(batch_faces[0].box, single[0].box)[0, 0] > 0.95


def test_published_graph_runs_as_model_path(photos, yunet):
    det = Detector(backbone="yunet", model_path=PUBLISHED)
    img = cv2.imread(str(photos / "obama.jpg"))
    (a,), (b,) = det.detect(img), yunet.detect(img)
    np.testing.assert_allclose(a.box, b.box, atol=0.05)


def test_yunet_refuses_int8_and_foreign_files_by_name(tmp_path):
    with pytest.raises(ValueError, match="onnx-int8"):
        Detector(backbone="yunet", backend="onnx-int8")
    with pytest.raises(ValueError, match="model.pth"):
        Detector(backbone="yunet", model_path=tmp_path / "model.pth")
    with pytest.raises(FileNotFoundError, match="nothing.onnx"):
        Detector(backbone="yunet", model_path=tmp_path / "nothing.onnx")
    retina = tmp_path / "retina.onnx"
    from face_perception.detection import export

    shutil.copy(export.default_mnet_onnx(), retina)
    with pytest.raises(ValueError, match="not a YuNet graph"):
        Detector(backbone="yunet", model_path=retina)
    with pytest.raises(ValueError, match="unknown detector backbone 'yunet2'"):
        Detector(backbone="yunet2")


def test_damaged_cached_export_is_exported_again(tmp_path, monkeypatch):
    monkeypatch.setenv("FACE_PERCEPTION_CACHE", str(tmp_path))
    path = W.cached_onnx()
    assert path.parent == tmp_path / W.CACHE_SUBDIR
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    assert W.cached_onnx() == path and path.read_bytes() == good


def test_wider_evaluation_scores_yunet_with_the_same_ap_code_as_mnet(tmp_path, photos,
                                                                     core_detector):
    from face_perception.detection.evaluation import evaluate_detector
    from test.wider_fixture import build_wider_root

    _, val = build_wider_root(tmp_path / "wider", photos, core_detector, n_train=1, n_val=4)
    scores = {name: evaluate_detector(Detector(backbone=name, score_threshold=0.02), val)
              for name in ("mnet", "yunet")}
    for name, score in scores.items():
        assert score["all"].num_faces == sum(int((~s.ignore).sum()) for s in val)
        assert score["all"].ap > 0.85, (name, score["all"].ap)
