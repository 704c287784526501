"""One identity per track, on scenes from the real photos with the real detector and embedder:
names only from clear accumulated evidence, never changed or given by one frame, mixed evidence
unknown, upstream ids kept, and far fewer embeddings than judging every frame."""
import cv2
import pytest

from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.recognition import Embedder, Recognizer
from face_perception.tracking import FaceTracker, IdentityConfig, TrackingPipeline
from test.tracking_scenes import Cutouts, name_counts, scene, truth_ids

EVERY_FRAME = IdentityConfig(embed_period=0.0, unsure_period=0.0)  # worst case: no skipping


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def embedder():
    return Embedder("dlib_resnet", backend="onnx")


@pytest.fixture(scope="module")
def cutouts(photos, detector):
    return Cutouts(photos, detector)


def gallery_of(embedder, detector, photos, people):
    g = Gallery(embedder.meta.name, embedder.meta.embedding_size)
    for person in people:
        img = read_image_bgr(photos / f"{person}.jpg")
        g.add(person, embedder.embed_faces(img, detector.detect(img)[:1]))
    return g


@pytest.fixture(scope="module")
def both(embedder, detector, photos):
    return Recognizer(embedder, gallery_of(embedder, detector, photos, ["obama", "biden"]),
                      detector=detector)


@pytest.fixture(scope="module")
def obama_only(embedder, detector, photos):
    return Recognizer(embedder, gallery_of(embedder, detector, photos, ["obama"]),
                      detector=detector)


def run(frames, detector, recognizer, tracking=True, identity=None):
    pipe = TrackingPipeline(recognizer, FaceTracker() if tracking else None, identity)
    outs = [pipe.update(f.image, detector.detect(f.image), f.stamp_ns) for f in frames]
    return pipe, outs


def names_of(frames, outs, person):
    return [tf.category.name if tf is not None and tf.category is not None else None
            for _, tf in truth_ids(frames, outs)[person]]


def crossing(cutouts):
    return scene(cutouts, 40, lambda i: [("obama", 80 + 12 * i, 220, 100),
                                         ("biden", 560 - 12 * i, 260, 100)])


def test_crossing_people_are_named_without_wrong_names(detector, both, cutouts):
    frames = crossing(cutouts)
    _, outs = run(frames, detector, both)
    counts = name_counts(frames, outs)
    assert counts["wrong"] == 0 and counts["named"] > 40, counts
    for person in ("obama", "biden"):
        names = names_of(frames, outs, person)
        assert names[-1] == person and names[0] is None  # unknown until the evidence is clear
        assert set(names) <= {None, person}


def test_a_single_odd_frame_never_renames_a_confirmed_track(detector, both, cutouts):
    # Obama's face, with one frame where Biden's face is in his place and one heavily blurred.
    def place(i):
        return [("biden" if i == 20 else "obama", 100 + 8 * i, 240, 110)]
    frames = scene(cutouts, 34, place, blur=lambda i: 6 if i == 26 else 0)
    _, outs = run(frames, detector, both, identity=EVERY_FRAME)
    names = [out[0].category.name if out and out[0].category else None for out in outs]
    first = names.index("obama")
    assert first >= 2 and set(names[first:]) == {"obama"}, names
    _, off = run(frames, detector, both, tracking=False)
    assert off[20][0].category.name == "biden"  # judged alone, that frame is renamed


def test_a_stranger_is_never_named_from_single_frame_noise(detector, obama_only, cutouts):
    # Biden is not in this gallery. In every 6th frame his face is swapped for an Obama photo:
    # judged alone those frames name him; his track's evidence stays a stranger's.
    def place(i):
        stranger = "obama2" if i % 6 == 3 else "biden"
        return [("obama", 150, 220, 100), (stranger, 470, 240, 100)]
    frames = scene(cutouts, 36, place)
    _, outs = run(frames, detector, obama_only, identity=EVERY_FRAME)
    stranger = [tf for _, tf in truth_ids(frames, outs).get("biden", [])]
    noisy = [tf for _, tf in truth_ids(frames, outs).get("obama2", [])]
    assert len(stranger) == 30 and len(noisy) == 6
    assert all(tf is None or tf.category is None for tf in stranger + noisy)
    assert names_of(frames, outs, "obama")[-1] == "obama"
    _, off = run(frames, detector, obama_only, tracking=False)
    assert name_counts(frames, off, {"obama": "obama"}.get)["wrong"] == 6


def test_mixed_evidence_stays_unknown(detector, both, cutouts):
    # One track whose face alternates between two people frame by frame.
    frames = scene(cutouts, 24, lambda i: [("obama" if i % 2 else "biden", 320, 240, 110)])
    pipe, outs = run(frames, detector, both, identity=EVERY_FRAME)
    assert all(out[0].category is None for out in outs)
    ident = next(iter(pipe.identities.tracks.values()))
    # Every view counted, and the views' disagreement keeps the evidence under the bar.
    assert len(ident.observations) >= 20 and ident.extra["excess"] < ident.extra["needed"]


def test_upstream_ids_are_kept_and_key_the_identities(detector, both, cutouts):
    frames = crossing(cutouts)[:20]
    pipe = TrackingPipeline(both, FaceTracker())
    for f in frames:
        faces = detector.detect(f.image)
        ids = ["face-A" if face.box[0] < 300 else None for face in faces]
        # The upstream tracker's own ids: left face "face-A", the other untracked.
        out = pipe.update(f.image, faces, f.stamp_ns, track_ids=ids)
        assert [tf.track_id for tf in out] == ids
        assert all(tf.category is None for tf in out if tf.track_id is None)
    assert list(pipe.identities.tracks) == ["face-A"]
    assert pipe.identities.category("face-A").name == "obama"
    assert pipe.tracker.tracks == []  # our tracker was not used
    with pytest.raises(ValueError, match="2 faces but 1 track ids"):
        pipe.update(frames[0].image, detector.detect(frames[0].image), 1, track_ids=["x"])


def test_five_people_cost_a_fraction_of_the_embeddings(detector, both, cutouts):
    people = ["obama", "biden", "obama2", "obama3", "biden"]
    frames = scene(cutouts, 30, lambda i: [(p, 70 + 125 * k, 200 + 60 * (k % 2) + i, 70)
                                           for k, p in enumerate(people)])
    on, _ = run(frames, detector, both)
    off, _ = run(frames, detector, both, tracking=False)
    assert off.embeddings == 5 * 30
    assert on.embeddings <= off.embeddings // 3, (on.embeddings, off.embeddings)


def test_a_new_gallery_restarts_the_identities(detector, both, obama_only, cutouts):
    frames = scene(cutouts, 12, lambda i: [("biden", 320, 240, 110)])
    pipe, outs = run(frames, detector, both)
    assert outs[-1][0].category.name == "biden"
    pipe.set_recognizer(obama_only)
    out = pipe.update(frames[-1].image, detector.detect(frames[-1].image),
                      frames[-1].stamp_ns + 33_000_000)
    assert out[0].category is None and out[0].track_id == outs[-1][0].track_id


def test_identity_settings_are_checked():
    with pytest.raises(ValueError, match="cannot exceed the window"):
        IdentityConfig(window=2, min_observations=3)
    with pytest.raises(ValueError, match="min_agreement"):
        IdentityConfig(min_agreement=1.5)
    assert cv2 is not None
