"""Naming people on video from whole tracks (issue 21): on a sequence of real photos with real
camera effects (test/tracking_scenes.py ``naming_sequence``, short version), offline names more
face-frames than live and no stranger's track is named; the evidence threshold narrows with
independent views only; unknown tracks are embedded less and less often; flip averages a face
with its mirror image."""
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.pipeline import FacePipeline
from face_perception.recognition import Embedder, Recognizer
from face_perception.recognition.open_set_evidence import DEFAULT_MODELS, band_of
from face_perception.tracking import FaceTracker, IdentityConfig
from test.tracking_scenes import (
    NAMING_GALLERIES,
    Cutouts,
    NamingPhotos,
    naming_outcome,
    naming_sequence,
    scene,
    truth_ids,
)


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def embedder():
    return Embedder("dlib_resnet", backend="onnx")


@pytest.fixture(scope="module")
def naming_photos(photos, detector):
    return NamingPhotos(photos, detector)


@pytest.fixture(scope="module")
def frames(naming_photos):
    return naming_sequence(naming_photos, short=True)


def recognizer_of(embedder, detector, naming_photos, people):
    g = Gallery(embedder.meta.name, embedder.meta.embedding_size)
    for person in people:
        img = naming_photos.images[person]
        face = max(detector.detect(img), key=lambda f: f.width * f.height)
        g.add(person, embedder.embed_faces(img, [face]))
    return Recognizer(embedder, g, detector=detector)


def run(frames, detector, recognizer, mode, identity=None, tracking=True):
    pipe = FacePipeline(detector, recognizer, FaceTracker() if tracking else None, identity,
                        identity_mode=mode)
    results = [pipe.process(f.image, f.stamp_ns).without_image() for f in frames]
    if mode == "offline":
        results = pipe.offline_names(results)
    return pipe, results


@pytest.mark.parametrize("gallery", sorted(NAMING_GALLERIES))
def test_offline_names_more_than_live_and_never_a_stranger(gallery, frames, detector,
                                                            embedder, naming_photos):
    people = NAMING_GALLERIES[gallery]
    rec = recognizer_of(embedder, detector, naming_photos, people)
    counts = {}
    for mode in ("live", "offline"):
        _, results = run(frames, detector, rec, mode)
        assert all(r.identity_mode == mode for r in results)
        counts[mode] = naming_outcome(frames, [r.tracked for r in results], set(people))
    live, offline = counts["live"], counts["offline"]
    assert live["wrong"] == offline["wrong"] == 0, counts
    assert live["stranger_tracks_named"] == offline["stranger_tracks_named"] == 0, counts
    assert offline["right"] > live["right"] > 0, counts


def test_offline_names_a_track_from_its_first_frame(frames, detector, embedder,
                                                    naming_photos):
    rec = recognizer_of(embedder, detector, naming_photos, ("obama", "hopper"))
    _, live = run(frames, detector, rec, "live")
    _, offline = run(frames, detector, rec, "offline")
    close_up = [n for n, f in enumerate(frames) if "obama3" in f.truth]
    live_hits = dict(truth_ids(frames, [r.tracked for r in live])["obama3"])
    off_hits = dict(truth_ids(frames, [r.tracked for r in offline])["obama3"])
    first = close_up[0]
    # Live: unknown (and untracked) until the evidence and the track are confirmed; offline:
    # the same track, named on every frame from the first, with the track's id.
    assert live_hits[first] is None or live_hits[first].category is None
    assert all(tf is not None and tf.category is not None and tf.category.name == "obama"
               and tf.track_id is not None for tf in off_hits.values())
    assert len({tf.track_id for tf in off_hits.values()}) == 1


def test_evidence_threshold_narrows_with_independent_views_only():
    model = DEFAULT_MODELS["dlib_resnet"]
    high = band_of(0.9)
    mean = model.bands[high].mean
    _, one, _ = model.statistic([0.9], [high], [1.0])
    assert mean + one == pytest.approx(model.single_view_threshold(high))
    _, many, n_eff = model.statistic([0.9] * 20, [high] * 20, [1.0] * 20)
    assert n_eff == 20 and many < one and mean + many > model.floor(high)
    # Twenty nearly identical frames are worth about one view: no lower bar.
    _, same, n_same = model.statistic([0.9] * 20, [high] * 20, [0.05] * 20)
    assert n_same == pytest.approx(1.0) and same == pytest.approx(one, abs=1e-6)
    # Views that disagree (two faces in one track) raise the bar above one view's.
    _, mixed, _ = model.statistic([0.99, 0.8] * 5, [high] * 10, [1.0] * 10)
    assert mixed > one


def test_unknown_tracks_are_embedded_less_and_less_often(photos, detector, embedder,
                                                         naming_photos):
    rec = recognizer_of(embedder, detector, naming_photos, ("hopper",))
    cut = Cutouts(photos, detector)
    people = ["obama", "biden", "obama2", "obama3", "biden", "obama"]
    frames = scene(cut, 60, lambda i: [(p, 60 + 105 * k, 190 + 70 * (k % 2) + i % 30, 70)
                                       for k, p in enumerate(people)])
    before, _ = run(frames, detector, rec, "live", IdentityConfig(backoff=1.0))
    after, results = run(frames, detector, rec, "live")
    assert all(t.category is None for r in results for t in r.tracked)
    assert after.embeddings * 2 <= before.embeddings, (after.embeddings, before.embeddings)
    periods = [i.period for i in after.tracking.identities.tracks.values()]
    assert len(periods) == 6 and all(p is not None and p > 0.1 for p in periods), periods


def test_flip_averages_a_face_with_its_mirror_image(photos, detector):
    from face_perception.imageio import read_image_bgr

    img = read_image_bgr(photos / "obama2.jpg")
    face = detector.detect(img)[:1]
    plain = Embedder("dlib_resnet", backend="onnx")
    flipped = Embedder("dlib_resnet", backend="onnx", flip=True)
    chip = plain.align(img, face[0].landmarks)[None]
    mirror = np.ascontiguousarray(chip[:, :, ::-1])
    a, b = flipped.embed_chips(chip)[0], flipped.embed_chips(mirror)[0]
    assert a @ b == pytest.approx(1.0, abs=1e-5)  # mirror-invariant
    both = plain.embed_chips(chip)[0] + plain.embed_chips(mirror)[0]
    assert np.allclose(a, both / np.linalg.norm(both), atol=1e-5)
    assert float(plain.embed_chips(chip)[0] @ a) < 0.9999
