"""FaceTracker on synthetic scenes from the real photos, with the real RetinaFace detector:
ids stay stable under panning, zooming, crossing, occlusion and dropped frames, and change at a
scene cut or after a long absence."""
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.tracking import FaceTracker, TrackerConfig, TrackingPipeline
from face_perception.tracking.association import assign, iou_matrix
from test.tracking_scenes import Cutouts, scene, truth_ids


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def cutouts(photos, detector):
    return Cutouts(photos, detector)


def track(frames, detector, tracker=None):
    pipe = TrackingPipeline(None, tracker or FaceTracker())
    return pipe, [pipe.update(f.image, detector.detect(f.image), f.stamp_ns) for f in frames]


def ids_of(frames, outputs, person, skip_first=0):
    """Track ids given to ``person`` (None: not tracked / not confirmed) after ``skip_first``."""
    return [tf.track_id if tf is not None else None
            for n, tf in truth_ids(frames, outputs)[person] if n >= skip_first]


def test_iou_and_gated_assignment():
    a = [[0, 0, 10, 10], [100, 100, 110, 110]]
    b = [[5, 0, 15, 10], [300, 300, 310, 310]]
    iou = iou_matrix(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[0, 1] == 0 and iou[1, 0] == 0
    pairs, rows, cols = assign(1 - iou, 0.8)
    assert pairs == [(0, 0)] and rows == [1] and cols == [1]


def test_pan_keeps_one_id_confirmed_after_three_frames(detector, cutouts):
    frames = scene(cutouts, 30, lambda i: [("obama", 60 + 16 * i, 240, 110)])
    _, out = track(frames, detector)
    ids = ids_of(frames, out, "obama")
    assert ids[:2] == [None, None]  # tentative: no id published yet
    assert set(ids[2:]) == {"1"}, ids


def test_zoom_keeps_one_id(detector, cutouts):
    frames = scene(cutouts, 30, lambda i: [("biden", 320, 240, 60 + 6 * i)])
    _, out = track(frames, detector)
    assert set(ids_of(frames, out, "biden", 2)) == {"1"}


def test_two_people_crossing_keep_their_own_ids(detector, cutouts):
    # Biden passes in front of Obama: Obama is hidden for a few frames in the middle.
    frames = scene(cutouts, 40, lambda i: [("obama", 80 + 12 * i, 220, 100),
                                           ("biden", 560 - 12 * i, 260, 100)])
    _, out = track(frames, detector)
    obama = [i for i in ids_of(frames, out, "obama", 2) if i is not None]
    biden = [i for i in ids_of(frames, out, "biden", 2) if i is not None]
    assert len(set(obama)) == 1 and len(set(biden)) == 1 and set(obama) != set(biden)
    assert len(obama) < len(frames) - 2  # the occlusion really hid Obama for some frames


def test_partial_occlusion_keeps_the_id(detector, cutouts):
    def cover(i):  # the lower half of the face hidden for 8 frames
        x = 60 + 10 * i
        return [(x - 60, 240, x + 60, 300)] if 10 <= i < 18 else []
    frames = scene(cutouts, 30, lambda i: [("obama", 60 + 10 * i, 240, 110)], occlude=cover)
    _, out = track(frames, detector)
    ids = ids_of(frames, out, "obama", 2)
    assert set(i for i in ids if i is not None) == {"1"}, ids


def test_dropped_frames_and_uneven_rate_keep_the_id(detector, cutouts):
    gaps = {3, 4, 7, 8, 9, 12, 15, 16, 17, 18, 22, 23, 27}
    frames = scene(cutouts, 36, lambda i: [("obama", 40 + 15 * i, 200 + 2 * i, 100)], skip=gaps)
    _, out = track(frames, detector)
    ids = ids_of(frames, out, "obama", 3)
    assert set(ids) == {"1"}, ids


def test_scene_cut_starts_new_tracks(detector, cutouts):
    first = scene(cutouts, 10, lambda i: [("obama", 320, 240, 110)], bg="a")
    second = scene(cutouts, 10, lambda i: [("obama", 320, 240, 110)], bg="b", start=10)
    tracker = FaceTracker()
    _, out = track(first + second, detector, tracker)
    ids = ids_of(first + second, out, "obama")
    assert set(ids[2:10]) == {"1"} and ids[10:12] == [None, None] and set(ids[12:]) == {"2"}
    assert tracker.cuts == 1


def test_stamp_going_backwards_starts_new_tracks(detector, cutouts):
    frames = scene(cutouts, 6, lambda i: [("obama", 320, 240, 110)])
    tracker = FaceTracker(TrackerConfig(confirm_hits=1))
    _, out = track(frames + frames, detector, tracker)  # a bag played twice
    ids = ids_of(frames + frames, out, "obama")
    assert ids == ["1"] * 6 + ["2"] * 6


def test_leaving_and_coming_back(detector, cutouts, photos):
    from face_perception.recognition import Embedder, Recognizer

    rec = Recognizer(Embedder("dlib_resnet", backend="onnx"), None, detector=detector)

    def path(gone):  # out at the right edge, back at the left after ``gone`` frames
        def place(i):
            if i < 15:
                return [("obama", 300 + 25 * i, 240, 110)]
            if i < 15 + gone:
                return []
            return [("obama", 120, 240, 110)]
        return place

    for gone, max_age, same in ((12, 1.0, True), (45, 1.0, False)):
        frames = scene(cutouts, 15 + gone + 10, path(gone))
        tracker = FaceTracker(TrackerConfig(max_age=max_age, reid_similarity=rec.threshold))
        out = []
        for f in frames:
            faces = detector.detect(f.image)
            upd = tracker.update(faces, f.stamp_ns, f.image,
                                 embed=lambda idx, im=f.image, fs=faces: rec.embed(
                                     im, [fs[i] for i in idx]))
            for t, face in zip(upd.tracks, faces):
                if t is not None and t.embedding is None:
                    t.embedding = rec.embed(f.image, [face])[0]
            out.append(upd.tracks)
        before = {t.id for t in out[10] if t is not None}
        after = {t.id for t in out[-1] if t is not None}
        assert len(before) == 1 and len(after) == 1
        assert (before == after) == same, (gone, before, after)


def test_no_detections_end_tracks_after_max_age(detector, cutouts):
    tracker = FaceTracker(TrackerConfig(max_age=0.5))
    frames = scene(cutouts, 5, lambda i: [("obama", 320, 240, 110)])
    for f in frames:
        tracker.update(detector.detect(f.image), f.stamp_ns)
    assert [t.id for t in tracker.active] == [1]
    last = frames[-1].stamp_ns
    assert tracker.update([], last + 400_000_000).ended == []
    assert tracker.update([], last + 600_000_000).ended == [1]
    assert tracker.active == []


@pytest.mark.parametrize("pause_s,same_id", [(0.5, True), (10.0, False)])
def test_a_pause_longer_than_max_age_ends_tracks_before_matching(detector, cutouts, pause_s,
                                                                 same_id):
    # Issue 22 item 6: no frames at all for 10 s, then another person in a similar box. Expiry
    # used to run after matching, so Biden inherited Obama's confirmed id.
    before = scene(cutouts, 5, lambda i: [("obama", 320, 240, 110)])
    (after,) = scene(cutouts, 1, lambda i: [("biden", 324, 242, 110)], start=5)
    tracker = FaceTracker(TrackerConfig(max_age=1.0, scene_cut=None))
    for f in before:
        tracker.update(detector.detect(f.image), f.stamp_ns)
    (obama,) = tracker.active
    upd = tracker.update(detector.detect(after.image),
                         before[-1].stamp_ns + int(pause_s * 1e9))
    (track,) = upd.tracks
    assert (track is obama) == same_id
    assert upd.ended == ([] if same_id else [obama.id])
    if not same_id:
        assert track.id != obama.id and not track.confirmed  # a new, tentative track


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="max_age"):
        TrackerConfig(max_age=0)
    with pytest.raises(ValueError, match="confirm_hits"):
        TrackerConfig(confirm_hits=0)
    with pytest.raises(ValueError, match="scene cut threshold"):
        FaceTracker(TrackerConfig(scene_cut=2.0))
    assert np.isfinite(TrackerConfig().high_score)
