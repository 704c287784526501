"""Specifications of ``Detector`` on the real photos: one face each, collages, TTA, batches,
both backends agreeing, and bad inputs refused before the model runs."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.detection.box_utils import box_iou

PORTRAITS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
# (photo, scale, x, y) pasted onto one canvas: faces of about 50 to 110 pixels.
COLLAGE = [("obama.jpg", 0.45, 20, 40), ("biden.jpg", 0.25, 470, 30),
           ("obama2.jpg", 0.40, 760, 60), ("obama3.jpg", 0.20, 1060, 20)]
CANVAS = (620, 1400)


@pytest.fixture(scope="module")
def onnx_detector():
    return Detector(backend="onnx")


@pytest.fixture(scope="module")
def torch_detector():
    return Detector(backend="torch")


@pytest.fixture(scope="module")
def images(photos):
    return {name: cv2.imread(str(photos / name)) for name in PORTRAITS}


@pytest.fixture(scope="module")
def reference_boxes(onnx_detector, images):
    """The single face the detector finds in each full-size portrait (checked below)."""
    return {name: onnx_detector.detect(img)[0].box for name, img in images.items()}


@pytest.fixture(scope="module")
def collage(images, reference_boxes):
    """A canvas with four photos pasted at known places, and where their faces must be."""
    canvas = np.full((*CANVAS, 3), 127, np.uint8)
    expected = []
    for name, scale, x, y in COLLAGE:
        small = cv2.resize(images[name], None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        canvas[y:y + h, x:x + w] = small
        expected.append(reference_boxes[name] * scale + np.array([x, y, x, y], np.float32))
    return canvas, np.stack(expected)


def _assert_sensible_face(face, width, height):
    lm = face.landmarks
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert face.width > 0.1 * min(width, height), "a portrait's face is not tiny"
    left_eye, right_eye, nose, left_mouth, right_mouth = lm
    assert left_eye[0] < right_eye[0] and left_mouth[0] < right_mouth[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(left_mouth[1], right_mouth[1])
    assert (lm[:, 0] > x1).all() and (lm[:, 0] < x2).all()
    assert (lm[:, 1] > y1).all() and (lm[:, 1] < y2).all()


def _assert_matches(faces, expected, min_iou=0.5):
    boxes = np.stack([f.box for f in faces]) if faces else np.zeros((0, 4), np.float32)
    assert len(faces) == len(expected), f"found {len(faces)} faces, expected {len(expected)}"
    iou = box_iou(expected, boxes)
    assert (iou.max(1) > min_iou).all(), iou.round(2)
    # Each expected face is matched by a different detection: no duplicates.
    assert len(set(iou.argmax(1).tolist())) == len(expected)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_detector_finds_exactly_one_sensible_face_in_each_portrait(backend, images, request):
    det = request.getfixturevalue(f"{backend}_detector")
    for name, img in images.items():
        faces = det.detect(img)
        assert len(faces) == 1, f"{name}: {len(faces)} faces"
        assert faces[0].score > 0.9
        _assert_sensible_face(faces[0], img.shape[1], img.shape[0])


def test_detector_finds_large_face_in_large_photo_once(onnx_detector, images):
    big = cv2.resize(images["obama.jpg"], None, fx=2.5, fy=2.5)  # 2843x2275, face ~550 px
    faces = onnx_detector.detect(big)
    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box / 2.5, onnx_detector.detect(images["obama.jpg"])[0].box,
                               atol=6)
    # At full resolution the same photo gives extra boxes (the largest anchors are 512 px):
    # the reason the size policy exists.
    assert len(Detector(target_size=10_000, max_size=10_000).detect(big)) > 1


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_detector_finds_each_face_of_a_collage_once_at_its_place(backend, collage, request):
    canvas, expected = collage
    faces = request.getfixturevalue(f"{backend}_detector").detect(canvas)
    _assert_matches(faces, expected)
    assert [f.score for f in faces] == sorted((f.score for f in faces), reverse=True)


@pytest.mark.parametrize("backend,kwargs", [
    ("onnx", {"flip": True}),
    ("onnx", {"scales": [0.6, 1.0, 1.5], "flip": True}),
    ("onnx", {"scales": [0.75, 1.0], "merge": "nms"}),
    ("torch", {"scales": [0.75, 1.0], "flip": True}),
])
def test_test_time_augmentation_still_finds_each_collage_face_once(backend, kwargs, collage):
    canvas, expected = collage
    det = Detector(backend=backend, upscale=True, **kwargs)
    faces = det.detect(canvas)
    _assert_matches(faces, expected)
    for f in faces:
        assert f.landmarks[0, 0] < f.landmarks[1, 0], "flip must keep image-left eye first"


def test_flip_pass_alone_mirrors_boxes_and_landmarks_back(images):
    img = images["obama.jpg"]
    plain = Detector().detect(img)[0]
    mirrored = Detector().detect(np.ascontiguousarray(img[:, ::-1]))[0]
    w = img.shape[1]
    # The network is not exactly mirror-symmetric: allow 5 % of the face height.
    tol = 0.05 * plain.height
    np.testing.assert_allclose([w - mirrored.box[2], mirrored.box[1], w - mirrored.box[0],
                                mirrored.box[3]], plain.box, atol=tol)
    back = mirrored.landmarks.copy()
    back[:, 0] = w - back[:, 0]
    np.testing.assert_allclose(back[[1, 0, 2, 4, 3]], plain.landmarks, atol=tol)
    # The flip pass inside the detector does this mapping itself: its merged result stays
    # within the same tolerance of the plain pass.
    both = Detector(flip=True).detect(img)
    assert len(both) == 1
    np.testing.assert_allclose(both[0].box, plain.box, atol=tol)
    # Also when the frame is used at its native size (the mirrored view is not resized).
    frame = cv2.resize(img, (480, 600))
    native = Detector(flip=True).detect(frame)
    assert len(native) == 1
    np.testing.assert_allclose(native[0].box, Detector().detect(frame)[0].box,
                               atol=0.05 * native[0].height)


def test_onnx_and_torch_backends_agree(onnx_detector, torch_detector, images, collage):
    for img in [*images.values(), collage[0]]:
        a, b = onnx_detector.detect(img), torch_detector.detect(img)
        assert len(a) == len(b)
        for fa, fb in zip(a, b):
            np.testing.assert_allclose(fa.box, fb.box, atol=0.5)
            np.testing.assert_allclose(fa.landmarks, fb.landmarks, atol=0.5)
            assert abs(fa.score - fb.score) < 1e-3


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_detect_batch_equals_single_images(backend, images, collage, request):
    det = request.getfixturevalue(f"{backend}_detector")
    batch = [images["obama.jpg"], collage[0], cv2.resize(images["biden.jpg"], (300, 680)),
             cv2.cvtColor(images["obama2.jpg"], cv2.COLOR_BGR2GRAY)]
    together = det.detect_batch(batch)
    assert len(together) == len(batch)
    for img, faces in zip(batch, together):
        alone = det.detect(img)
        assert len(faces) == len(alone)
        if alone:
            iou = box_iou(np.stack([f.box for f in alone]), np.stack([f.box for f in faces]))
            assert (iou.max(1) > 0.9).all()
            assert max(abs(a.score - b.score) for a, b in zip(alone, faces)) < 0.05
    assert det.detect_batch([]) == []


def test_grayscale_and_bgra_inputs_are_converted(onnx_detector, images):
    img = images["obama.jpg"]
    assert len(onnx_detector.detect(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))) == 1
    assert len(onnx_detector.detect(cv2.cvtColor(img, cv2.COLOR_BGR2BGRA))) == 1
    rgb = onnx_detector.detect(img[:, :, ::-1].copy(), color_order="rgb")[0]
    np.testing.assert_allclose(rgb.box, onnx_detector.detect(img)[0].box, atol=1e-3)


def test_image_without_faces_gives_empty_list(onnx_detector):
    rng = np.random.default_rng(0)
    assert onnx_detector.detect(np.full((480, 640, 3), 90, np.uint8)) == []
    noise = cv2.GaussianBlur(rng.integers(0, 255, (240, 320, 3), dtype=np.uint8), (5, 5), 0)
    assert onnx_detector.detect(noise) == []


def test_tiny_image_is_handled(onnx_detector):
    assert onnx_detector.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert onnx_detector.detect(np.zeros((7, 3), np.uint8)) == []


NAN = np.full((8, 8, 3), np.nan, np.float32)


@pytest.mark.parametrize("bad,message", [
    (None, "None"),
    (np.zeros((0, 0, 3), np.uint8), "zero size"),
    (np.zeros((10, 0, 3), np.uint8), "zero size"),
    (np.array([], np.uint8), "HxW"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    (np.zeros((10, 10, 3), np.uint16), "uint8"),
    (NAN, "NaN"),
    (np.zeros((10, 10, 2), np.uint8), "channels"),
    (np.zeros((10, 10, 5), np.uint8), "channels"),
    (np.zeros((2, 10, 10, 3), np.uint8), "HxW"),
    ([[1, 2], [3, 4]], "numpy array"),
    ("/no/such/photo.jpg", "/no/such/photo.jpg"),
])
def test_bad_inputs_raise_clear_value_error_before_any_model_call(bad, message):
    det = Detector()
    calls = []
    run = det._run
    det._run = lambda blob: calls.append(blob.shape) or run(blob)
    with pytest.raises(ValueError, match=message):
        det.detect(bad)
    with pytest.raises(ValueError, match="image 1 of the batch"):
        det.detect_batch([np.zeros((32, 32, 3), np.uint8), bad])
    assert calls == []


def test_constructor_refuses_bad_settings_by_name(tmp_path):
    with pytest.raises(ValueError, match="tensorrt"):
        Detector(backend="tensorrt")
    with pytest.raises(ValueError, match="score_threshold"):
        Detector(score_threshold=1.5)
    with pytest.raises(ValueError, match="scales"):
        Detector(scales=[0])
    with pytest.raises(ValueError, match="squeezenet"):
        Detector(backbone="squeezenet")
    with pytest.raises(FileNotFoundError, match="missing.onnx"):
        Detector(model_path=tmp_path / "missing.onnx")


def test_empty_ros_style_parameters_mean_defaults():
    det = Detector(scales=[], model_path="")
    assert det.scales == [1.0] and det.model_path is None


def test_max_faces_keeps_the_best_scores(collage):
    canvas, _ = collage
    all_faces = Detector().detect(canvas)
    top2 = Detector(max_faces=2).detect(canvas)
    assert [f.score for f in top2] == [f.score for f in all_faces[:2]]


def test_size_policy_shrinks_to_target_and_caps_long_side():
    det = Detector(target_size=640, max_size=1280)
    assert det.input_scale(480, 640) == 1.0  # never enlarged by default
    assert det.input_scale(1080, 1920) == pytest.approx(640 / 1080)
    assert det.input_scale(1000, 4000) == pytest.approx(1280 / 4000)
    assert Detector(upscale=True).input_scale(240, 320) == pytest.approx(640 / 240)


def test_cuda_request_without_gpu_falls_back_to_cpu_with_a_warning():
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA for onnxruntime")
    with pytest.warns(RuntimeWarning, match="CPU"):
        det = Detector(device="cuda")
    assert det.providers == ["CPUExecutionProvider"]


def test_detector_wraps_an_in_memory_network_without_changing_it(images, onnx_detector):
    import torch

    from face_perception.detection.retinaface import RetinaFace
    from face_perception.detection.weights import mnet_state_dict

    net = RetinaFace("mnet")
    net.load_state_dict(mnet_state_dict())
    net.train()
    det = Detector.from_torch_model(net, score_threshold=0.6)
    faces = det.detect(images["biden.jpg"])
    assert len(faces) == 1 and det.score_threshold == 0.6
    np.testing.assert_allclose(faces[0].box, onnx_detector.detect(images["biden.jpg"])[0].box,
                               atol=0.5)
    assert net.training and any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
