"""Recognizer on real photos: our Detector, our alignment and the converted dlib model (no dlib).

The core acceptance test of issue 4: every same-person pair (obama, obama2, obama3) is over the
model's similarity threshold (under its distance threshold), every obama-biden pair is not,
and a gallery of one photo per person recognises the other photos.
"""
import itertools

import cv2
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.recognition import Recognizer
from face_perception.types import Face

OBAMA = ("obama.jpg", "obama2.jpg", "obama3.jpg")


class CountingEmbedder:
    """The real Embedder, counting how often the network is called."""

    def __init__(self, embedder):
        self.inner, self.calls, self.meta = embedder, [], embedder.meta

    def align(self, image, landmarks):
        return self.inner.align(image, landmarks)

    def embed_chips(self, chips):
        self.calls.append(len(chips))
        return self.inner.embed_chips(chips)


@pytest.fixture(scope="module")
def embedder(dlib_embedder):
    return dlib_embedder


@pytest.fixture(scope="module")
def detector(core_detector):
    return core_detector


@pytest.fixture(scope="module")
def images(photos):
    return {name: read_image_bgr(photos / name) for name in OBAMA + ("biden.jpg",)}


@pytest.fixture(scope="module")
def faces(images, detector):
    out = {}
    for name, img in images.items():
        found = detector.detect(img)
        assert len(found) == 1, name
        out[name] = found[0]
    return out


@pytest.fixture(scope="module")
def gallery(embedder, images, faces):
    g = Gallery(embedder.meta.name, embedder.meta.embedding_size)
    for person, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        g.add(person, embedder.embed_faces(images[photo], [faces[photo]]), sources=[photo])
    return g


def test_same_person_pairs_pass_and_different_people_fail_the_threshold(embedder, images,
                                                                        faces):
    rec = Recognizer(embedder, None, detector=None)
    emb = {n: rec.embed(images[n], [faces[n]])[0] for n in images}
    thr = embedder.meta.threshold
    report = {}
    for a, b in itertools.combinations(sorted(emb), 2):
        sim = float(emb[a] @ emb[b])
        same = a in OBAMA and b in OBAMA
        report[(a, b)] = round(sim, 3)
        assert (sim > thr) == same, (a, b, sim, thr)
    # With a margin on both sides, not a borderline pass.
    same_sims = [s for (a, b), s in report.items() if a in OBAMA and b in OBAMA]
    diff_sims = [s for (a, b), s in report.items() if not (a in OBAMA and b in OBAMA)]
    assert min(same_sims) - thr > 0.02 and thr - max(diff_sims) > 0.02, report


def test_one_photo_per_person_recognises_the_other_photos(embedder, detector, gallery, images,
                                                          faces):
    rec = Recognizer(embedder, gallery, detector=detector)
    for name in ("obama2.jpg", "obama3.jpg"):
        (cat,) = rec.identify(images[name], [faces[name]])
        assert cat is not None and cat.name == "obama", (name, cat)
        assert cat.confidence > embedder.meta.threshold
        assert cat.extra["landmarks"] == "given"


def collage(images, faces, names):
    """The faces of several photos side by side in one frame, and where each went."""
    crops = []
    for n in names:
        x1, y1, x2, y2 = faces[n].box.astype(int)
        pad = int(0.4 * (x2 - x1))
        h, w = images[n].shape[:2]
        crops.append(images[n][max(0, y1 - pad):min(h, y2 + pad),
                               max(0, x1 - pad):min(w, x2 + pad)])
    height = max(c.shape[0] for c in crops)
    canvas = np.full((height, sum(c.shape[1] for c in crops), 3), 255, np.uint8)
    x = 0
    for c in crops:
        canvas[:c.shape[0], x:x + c.shape[1]] = c
        x += c.shape[1]
    return canvas


def test_all_faces_of_a_frame_go_through_one_embedder_call(embedder, detector, gallery, images,
                                                           faces):
    frame = collage(images, faces, ["obama3.jpg", "biden.jpg", "obama2.jpg"])
    found = sorted(detector.detect(frame), key=lambda f: f.box[0])
    assert len(found) == 3
    counting = CountingEmbedder(embedder)
    rec = Recognizer(counting, gallery, detector=detector)
    names = [c.name if c else None for c in rec.identify(frame, found)]
    assert names == ["obama", "biden", "obama"]
    assert counting.calls == [3]


def test_boxes_without_landmarks_get_them_from_the_detector(embedder, detector, gallery,
                                                            images, faces):
    rec = Recognizer(embedder, gallery, detector=detector)
    for name, person in (("obama2.jpg", "obama"), ("biden.jpg", "biden")):
        face = faces[name]
        bare = Face(face.box, face.score, landmarks=None)
        (cat,) = rec.identify(images[name], [bare])
        assert cat is not None and cat.name == person
        assert cat.extra["landmarks"] == "detector"
        # The landmarks found inside the box are the detector's own, to within a few pixels.
        (lms, src), = rec.complete_landmarks(images[name], [bare])
        assert src == "detector"
        assert np.abs(lms - face.landmarks).max() < 0.05 * face.width


def test_box_derived_landmarks_when_no_face_is_found_in_the_box(embedder, gallery, images,
                                                                faces):
    blind = Detector(score_threshold=1.0)  # finds nothing: forces the fallback
    rec = Recognizer(embedder, gallery, detector=blind)
    for name, person in (("obama3.jpg", "obama"), ("biden.jpg", "biden")):
        bare = Face(faces[name].box, 1.0, landmarks=None)
        (cat,) = rec.identify(images[name], [bare])
        assert cat is not None and cat.name == person, (name, cat)
        assert cat.extra["landmarks"] == "box"


def test_recognizer_refuses_gallery_of_other_model(embedder):
    with pytest.raises(ValueError, match=r"'ir_50_512' \(embedding size 512\).*'dlib_resnet' "
                                         r"\(embedding size 128\)"):
        Recognizer(embedder, Gallery("ir_50_512", 512))


def test_threshold_comes_from_the_model_and_can_be_overridden(embedder, detector, gallery,
                                                              images, faces):
    # Naming uses the model's open-set default (stricter than its 1:1 threshold; open_set.py).
    from face_perception.open_set import default_rule
    rec = Recognizer(embedder, gallery)
    assert rec.rule == default_rule(embedder.meta) and rec.rule_source == "model"
    assert rec.threshold > embedder.meta.threshold
    strict = Recognizer(embedder, gallery, threshold=0.999, detector=detector)
    assert strict.identify(images["obama2.jpg"], [faces["obama2.jpg"]]) == [None]
    with pytest.raises(ValueError, match="cosine similarity in"):
        Recognizer(embedder, gallery, threshold=3.0)


def test_empty_gallery_knows_nobody_and_no_faces_give_no_results(embedder, images, faces):
    rec = Recognizer(embedder, Gallery(embedder.meta.name, embedder.meta.embedding_size))
    assert rec.identify(images["obama.jpg"], [faces["obama.jpg"]]) == [None]
    assert rec.identify(images["obama.jpg"], []) == []


def test_bad_boxes_are_refused_with_the_box_in_the_message(embedder, detector, images):
    rec = Recognizer(embedder, None, detector=detector)
    with pytest.raises(ValueError, match="x2 > x1"):
        rec.embed(images["obama.jpg"], [Face([50, 50, 10, 80], 1.0)])


def test_degenerate_boxes_are_unknown_and_do_not_cost_the_other_faces(embedder, detector,
                                                                      gallery, images, faces):
    # A foreign detector's zero-size or NaN box must not take the frame's other identities down.
    rec = Recognizer(embedder, gallery, detector=detector)
    bare = Face(faces["obama2.jpg"].box, 1.0)
    result = rec.identify(images["obama2.jpg"], [
        Face([50, 50, 50, 80], 1.0), bare, Face([np.nan, 0, 10, 10], 1.0)])
    assert result[0] is None and result[2] is None
    assert result[1] is not None and result[1].name == "obama"


def test_boxes_from_a_foreign_detector_are_recognised(embedder, detector, gallery, images):
    # dlib's HOG detector (test-only dependency) stands in for any other face detector that
    # publishes bare boxes: its boxes are tighter than RetinaFace's and carry no landmarks.
    import dlib

    hog = dlib.get_frontal_face_detector()
    rec = Recognizer(embedder, gallery, detector=detector)
    for name, person in (("obama2.jpg", "obama"), ("obama3.jpg", "obama"),
                         ("biden.jpg", "biden")):
        img = images[name]
        k = 800 / max(img.shape[:2])  # HOG on a smaller copy: seconds faster, same face
        small = cv2.resize(img, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
        rects = hog(np.ascontiguousarray(small[:, :, ::-1]), 0)
        assert len(rects) == 1, name
        r = rects[0]
        bare = Face(np.array([r.left(), r.top(), r.right(), r.bottom()]) / k, 1.0,
                    landmarks=None)
        (cat,) = rec.identify(images[name], [bare])
        assert cat is not None and cat.name == person, (name, cat)
        assert cat.extra["landmarks"] == "detector"


def test_partial_faces_at_the_image_border_are_recognised(embedder, detector, gallery, photos):
    rec = Recognizer(embedder, gallery, detector=detector)
    for name in ("obama_partial_face.jpg", "obama_partial_face2.jpg"):
        img = read_image_bgr(photos / name)
        faces = detector.detect(img)
        assert len(faces) == 1, name
        (cat,) = rec.identify(img, faces)
        assert cat is not None and cat.name == "obama", (name, cat)
