"""Gallery, .bin files and metrics with real face embeddings of the real test photos.

The embeddings come from dlib-bin's own pipeline (HOG detector, 5-point shape predictor, ResNet
descriptor; dlib is a test-only dependency), so these tests check this module's parts on real
data independently of the package's own embedder.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_perception.data.verification_bin import read_verification_bin, write_verification_bin
from face_perception.gallery import Gallery
from face_perception.recognition.verification import evaluate_verification, pair_similarities

dlib = pytest.importorskip("dlib", reason="dlib-bin (test-only dependency) is not installed")
models = pytest.importorskip("face_recognition_models")

PHOTOS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg",
          "obama_partial_face2.jpg", "biden.jpg"]


@pytest.fixture(scope="module")
def dlib_net():
    return dlib.face_recognition_model_v1(models.face_recognition_model_location())


@pytest.fixture(scope="module")
def dlib_faces(photos, dlib_net):
    """{photo: (150x150 aligned chip RGB, 128-d dlib descriptor)}."""
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    out = {}
    for name in PHOTOS:
        img = cv2.imread(str(photos / name))
        scale = 640.0 / max(img.shape[:2])  # the HOG detector is slow on 2000-pixel photos
        img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        boxes = detector(rgb, 1)
        assert boxes, f"dlib found no face in {name}"
        box = max(boxes, key=lambda r: r.area())
        chip = np.asarray(dlib.get_face_chip(rgb, shapes(rgb, box), size=150, padding=0.25))
        out[name] = (chip, np.asarray(dlib_net.compute_face_descriptor(chip), np.float32))
    return out


def test_gallery_of_real_embeddings_names_each_photo_and_survives_a_round_trip(dlib_faces,
                                                                             tmp_path):
    g = Gallery("dlib_resnet_v1", 128)
    g.add("obama", dlib_faces["obama.jpg"][1], sources="obama.jpg")
    g.add("biden", dlib_faces["biden.jpg"][1], sources="biden.jpg")
    index = g.save(tmp_path / "people")
    g = Gallery.load(index, model_id="dlib_resnet_v1", embedding_size=128)
    others = ["obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]
    queries = np.stack([dlib_faces[n][1] for n in others])
    # dlib's descriptors: same person cos >= 0.95 here, Obama vs Biden about 0.8.
    hits = g.match(queries, threshold=0.9)
    assert [c.name if c else None for c in hits] == ["obama"] * 4
    ranked = g.search(queries, k=2)
    assert all(r[0][0] == "obama" and r[0][1] - r[1][1] > 0.08 for r in ranked)
    # A stranger: Biden against a gallery that only knows Obama is nobody.
    g.remove("biden")
    assert g.match(dlib_faces["biden.jpg"][1], threshold=0.9) == [None]


def test_verification_bin_of_real_chips_gives_perfect_metrics(dlib_faces, dlib_net, tmp_path):
    obama = [n for n in PHOTOS if n.startswith("obama")]
    pairs = [(a, b) for i, a in enumerate(obama) for b in obama[i + 1:]][:5]
    pairs = [p for same in zip(pairs, [(o, "biden.jpg") for o in obama]) for p in same]
    images = []
    for a, b in pairs:
        images += [dlib_faces[a][0][:, :, ::-1], dlib_faces[b][0][:, :, ::-1]]  # BGR arrays
    issame = [b != "biden.jpg" for _, b in pairs]
    vb = read_verification_bin(write_verification_bin(tmp_path / "mini.bin", images, issame))
    # Embed the decoded JPEG chips, as an evaluation of a real .bin does.
    emb = np.stack([np.asarray(dlib_net.compute_face_descriptor(vb.decode(i, "rgb")))
                    for i in range(2 * len(vb))])
    sims = pair_similarities(emb[0::2], emb[1::2])
    report = evaluate_verification(sims, vb.issame, n_folds=5)
    assert report.num_same == report.num_different == 5
    assert report.accuracy_mean == 1.0 and report.auc == 1.0 and report.eer == 0.0
    assert 0.83 < report.threshold < 0.95
