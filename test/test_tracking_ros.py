"""Tracking in the nodes, as real processes over real DDS: the detector's track ids stay stable
over a moving face, the recognizer names the track once and keeps the name, an upstream
tracker's ids are kept, and boxes without ids or landmarks still get identities (the
recognizer's own tracker). Frames from test/tracking_scenes.py (the real photos, moved), in lock
step over reliable QoS; counters from ``~/get_stats`` after the frames they count."""
import pytest
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from face_perception.messages.face_fields import LANDMARK_CLASS_IDS
from test.ros_harness import (
    image_msg,
    lock_step,
    node_args,
    set_params,
    start,
    unique_ns,
    wait_for_subscribers,
    write_params,
)
from test.test_ros_recognizer import box_only, start_recognizer_alone
from test.tracking_scenes import Cutouts, scene

N = 16  # frames of a sequence (30 Hz stamps)
CONFIRM = 3  # the default track_confirm_hits: ids from the third frame on


@pytest.fixture(scope="module")
def cutouts(photos, core_detector):
    return Cutouts(photos, core_detector)


@pytest.fixture(scope="module")
def gallery(enroll, tmp_path_factory):
    return enroll().save(tmp_path_factory.mktemp("gallery") / "people.json")


def pan(cut, person="obama", start=0, n=N):
    """One face moving right, 9 px a frame (``start``: the first frame's index, i.e. stamp)."""
    return scene(cut, n, lambda i: [(person, 200 + 9 * (i - start), 240, 120)], start=start)


def names_of(arr):
    return [d.results[0].hypothesis.class_id for d in arr.detections]


def ids_of(arr):
    return [d.id for d in arr.detections]


def assert_named_once_and_kept(arrays, name):
    """Unknown while the track's evidence builds up, then ``name`` on every later frame."""
    names = [names_of(a) for a in arrays]
    assert all(len(n) == 1 for n in names), names
    first = next((i for i, n in enumerate(names) if n == [name]), None)
    assert first is not None and first < len(names) - 3, names
    assert all(n == ["unknown"] for n in names[:first]), names
    assert all(n == [name] for n in names[first:]), names
    return first


def test_detector_ids_stay_stable_and_the_recognizer_keeps_the_tracks_name(
        ros, cutouts, gallery, tmp_path):
    ns = unique_ns("/track_pair")
    det_params = write_params(tmp_path / "det.yaml", "face_detector",
                              {"qos_reliability": "reliable"})
    rec_params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "gallery_path": str(gallery)})
    det = start("face_detector", tmp_path, node_args(ns, det_params))
    rec = start("face_recognizer", tmp_path, node_args(ns, rec_params))
    try:
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        idents = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2, 120), det.output() + rec.output()
        assert ros.wait_matched(f"{ns}/faces/detections"), det.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        assert ros.wait_connected(f"{ns}/face_detector", f"{ns}/face_recognizer"), rec.output()
        frames = pan(cutouts)
        answers = [lock_step(pub, idents, image_msg(f.image, f.stamp_ns), rec) for f in frames]
        by_stamp = {(m.header.stamp.sec, m.header.stamp.nanosec): m for m in list(dets)}
        det_answers = [by_stamp[(a.header.stamp.sec, a.header.stamp.nanosec)] for a in answers]

        # Detector: one face a frame, no id while the track is tentative, then one id throughout.
        det_ids = [ids_of(a) for a in det_answers]
        assert det_ids[:CONFIRM - 1] == [[""]] * (CONFIRM - 1), det_ids
        (track,) = det_ids[CONFIRM - 1]
        assert track != "" and det_ids[CONFIRM - 1:] == [[track]] * (N - CONFIRM + 1), det_ids
        for arr in det_answers:
            assert [r.hypothesis.class_id for r in arr.detections[0].results] == \
                ["face", *LANDMARK_CLASS_IDS]
        det_stats = ros.stats(f"{ns}/face_detector")
        assert (det_stats["processed"], det_stats["faces_published"],
                det_stats["active_tracks"]) == (N, N, 1)

        # Recognizer: the detector's ids kept, the track named once and the name kept.
        assert [ids_of(a) for a in answers] == det_ids
        first = assert_named_once_and_kept(answers, "obama")
        assert first >= CONFIRM - 1  # never named before the track exists
        stats = ros.stats(f"{ns}/face_recognizer")
        assert (stats["processed"], stats["faces_identified"], stats["faces_unknown"]) == \
            (N, N - first, first)
        assert (stats["track_ids"], stats["active_tracks"]) == ("upstream", 1)
        # Evidence over the track, not an embedding per frame (a clear frontal face is named
        # from its first 2 views, identity_min_observations, then confirmed once a second).
        assert 2 <= stats["embeddings"] < N - CONFIRM, stats

        # Tracking off at run time: the detector's ids are empty from the next frame on.
        (result,) = set_params(ros, f"{ns}/face_detector", tracking=False)
        assert result.successful, result.reason
        more = pan(cutouts, start=N, n=2)
        for f in more:
            lock_step(pub, idents, image_msg(f.image, f.stamp_ns), rec)
        stamps = {(f.stamp_ns // 10**9, f.stamp_ns % 10**9) for f in more}
        tail = [m for m in list(dets) if (m.header.stamp.sec, m.header.stamp.nanosec) in stamps]
        assert [ids_of(a) for a in tail] == [[""], [""]]
        assert ros.stats(f"{ns}/face_detector")["active_tracks"] == 0
    finally:
        for p in (det, rec):
            assert p.stop() in (0, -2), p.log_path.read_text()


@pytest.fixture(scope="module")
def recognizer_alone(ros, gallery, tmp_path_factory):
    """face_recognizer fed by the test as another detector would feed it (tracking on)."""
    tmp = tmp_path_factory.mktemp("rec_alone")
    ns = unique_ns("/track_alone")
    rec, ids, img_pub, det_pub = start_recognizer_alone(ros, tmp, ns, gallery, tracking=True)
    yield {"proc": rec, "ids": ids, "img": img_pub, "det": det_pub,
           "node": f"{ns}/face_recognizer"}
    assert rec.stop() in (0, -2), rec.log_path.read_text()


def feed(rec, core_detector, frames, det_ids):
    """Each frame's boxes (from the core detector, no landmarks) with ``det_ids(i)`` as
    Detection2D.id, then the image; the answers."""
    out = []
    for i, f in enumerate(frames):
        (face,) = core_detector.detect(f.image)
        msg = image_msg(f.image, f.stamp_ns)
        rec["det"].publish(box_only(msg.header, face.box, det_ids(i)))
        out.append(lock_step(rec["img"], rec["ids"], msg, rec["proc"]))
    return out


def test_recognizer_keys_identities_by_an_upstream_trackers_ids(
        ros, recognizer_alone, cutouts, core_detector):
    rec = recognizer_alone
    before = ros.stats(rec["node"])
    answers = feed(rec, core_detector, pan(cutouts, "biden", start=1000), lambda i: "person-7")
    assert [ids_of(a) for a in answers] == [["person-7"]] * N  # kept as sent
    assert_named_once_and_kept(answers, "biden")
    stats = ros.stats(rec["node"])
    assert stats["processed"] - before["processed"] == N
    assert (stats["track_ids"], stats["active_tracks"]) == ("upstream", 1)


def test_boxes_without_ids_or_landmarks_still_get_identities(
        ros, recognizer_alone, cutouts, core_detector):
    rec = recognizer_alone
    before = ros.stats(rec["node"])
    # Far later stamps: whatever came before has aged out; the sender gives no ids at all.
    answers = feed(rec, core_detector, pan(cutouts, "obama", start=3000), lambda i: "")
    ids = [ids_of(a) for a in answers]
    # The recognizer's own tracker: ids once its track is confirmed, the same throughout.
    assert ids[:CONFIRM - 1] == [[""]] * (CONFIRM - 1), ids
    (own,) = ids[CONFIRM - 1]
    assert own != "" and ids[CONFIRM - 1:] == [[own]] * (N - CONFIRM + 1), ids
    assert_named_once_and_kept(answers, "obama")
    stats = ros.stats(rec["node"])
    assert stats["processed"] - before["processed"] == N
    assert (stats["track_ids"], stats["active_tracks"]) == ("own", 1)
