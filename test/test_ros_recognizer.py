"""face_recognizer (with face_detector, and in the container) as real processes: identities for
photos, latched LabelInfo, gallery reload on change and by service, boxes from a foreign
detector, and a missing gallery. Frames go in lock step over reliable QoS. Every frame shows
another photo, so these nodes judge each frame alone (``tracking: false``); tracking over a
sequence is test_tracking_ros.py's."""
import os

import cv2
import pytest
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo

from face_perception.gallery import Gallery
from face_perception.messages.face_fields import LANDMARK_CLASS_IDS
from face_perception.ros.conversions import label_version
from test.ros_harness import (
    LATCHED,
    fit_640x480,
    frames_from,
    image_msg,
    lock_step,
    node_args,
    set_params,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    wait_stat,
    write_params,
)

T0 = 9_000 * 10**9
QUERY = ("obama2.jpg", "obama3.jpg", "biden.jpg")
EXPECTED = ["obama", "obama", "biden"]


@pytest.fixture(scope="module")
def galleries(enroll, tmp_path_factory):
    """Real galleries enrolled with the core API: both people, obama only, another model's."""
    folder = tmp_path_factory.mktemp("galleries")
    return {"both": enroll().save(folder / "both.json"),
            "obama_only": enroll([("obama", "obama.jpg")]).save(folder / "obama_only.json"),
            "other_model": enroll([("obama", "obama.jpg")], model_id="some_other_model").save(
                folder / "other.json"), "folder": folder}


def save_with_new_mtime(gallery: Gallery, path) -> None:
    """Save over ``path`` so that its index file's mtime surely changes (coarse clocks)."""
    index = Gallery.index_path(path)
    old = index.stat().st_mtime_ns
    gallery.save(path)
    if index.stat().st_mtime_ns == old:
        os.utime(index, ns=(old + 10**9, old + 10**9))


def names_of(arr):
    return [d.results[0].hypothesis.class_id for d in arr.detections]


def labels(info):
    return [c.class_name for c in info.class_map]


def assert_identity(arr, want):
    assert arr.header.frame_id == "camera"
    assert names_of(arr) == [want], arr
    det = arr.detections[0]
    assert det.header == arr.header
    assert 0.5 < det.results[0].hypothesis.score <= 1.0
    assert det.bbox.size_x > 20
    assert [r.hypothesis.class_id for r in det.results[1:]] == list(LANDMARK_CLASS_IDS)


def test_detector_and_recognizer_name_people_and_follow_gallery_changes(
        ros, photos, galleries, tmp_path):
    ns = unique_ns("/rec_test")
    node = f"{ns}/face_recognizer"
    gallery = tmp_path / "live" / "people.json"
    Gallery.load(galleries["both"]).save(gallery)
    det_params = write_params(tmp_path / "det.yaml", "face_detector",
                              {"qos_reliability": "reliable"})
    rec_params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "qos_depth": 5, "gallery_path": str(gallery),
        "gallery_poll_period": 0.5, "tracking": False})
    det = start("face_detector", tmp_path, node_args(ns, det_params))
    rec = start("face_recognizer", tmp_path, node_args(ns, rec_params))
    procs = (det, rec)
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        infos = ros.listen(LabelInfo, f"{ns}/faces/label_info", LATCHED)
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2, 120), det.output() + rec.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        assert ros.wait_connected(f"{ns}/face_detector", f"{ns}/face_recognizer"), rec.output()
        for i, (frame, want) in enumerate(zip(frames_from(photos, QUERY), EXPECTED)):
            assert_identity(lock_step(pub, ids, image_msg(frame, T0 + i * 10**8), rec), want)
        stats = ros.stats(node)
        assert (stats["processed"], stats["faces_identified"], stats["faces_unknown"]) == (3, 3, 0)
        # Latched LabelInfo: reaches this late subscriber, lists unknown then the gallery.
        assert until(lambda: infos, 30), rec.output()
        assert sorted(labels(infos[-1])) == ["biden", "obama", "unknown"]
        assert labels(infos[-1])[0] == "unknown"
        numbers = {c.class_name: c.class_id for c in infos[-1].class_map}
        version = label_version(infos[-1])

        # The gallery file changes (re-enrolled without biden): the node reloads it by itself.
        save_with_new_mtime(Gallery.load(galleries["obama_only"]), gallery)
        assert until(lambda: labels(infos[-1]) == ["unknown", "obama"], 30), rec.output()
        # Numbering stays put: obama keeps his class_id, the version grew.
        assert {c.class_name: c.class_id for c in infos[-1].class_map} == {
            "unknown": 0, "obama": numbers["obama"]}
        assert label_version(infos[-1]) > version
        biden = frames_from(photos, ["biden.jpg"])[0]
        arr = lock_step(pub, ids, image_msg(biden, T0 + 10 * 10**9), rec)
        assert names_of(arr) == ["unknown"]

        # The reload service reports what it loaded.
        res = ros.call(Trigger, f"{node}/reload_gallery", Trigger.Request())
        assert res.success and "1 identities" in res.message, res.message

        # A gallery of another model is refused and the current one stays.
        (result,) = set_params(ros, node, gallery_path=str(galleries["other_model"]))
        assert not result.successful and "some_other_model" in result.reason, result.reason
        # A good one is taken at run time, LabelInfo follows.
        (result,) = set_params(ros, node, gallery_path=str(galleries["both"]))
        assert result.successful, result.reason
        assert until(lambda: sorted(labels(infos[-1])) == ["biden", "obama", "unknown"], 30)
        assert {c.class_name: c.class_id for c in infos[-1].class_map} == numbers
        arr = lock_step(pub, ids, image_msg(biden, T0 + 11 * 10**9), rec)
        assert names_of(arr) == ["biden"]
    finally:
        for p in procs:
            assert p.stop() in (0, -2), p.log_path.read_text()


def box_only(header, face, det_id: str = "") -> Detection2DArray:
    """Detections as another detector sends them: a box, no landmarks."""
    arr = Detection2DArray(header=header)
    d = Detection2D(header=header, id=det_id)
    x1, y1, x2, y2 = (float(v) for v in face)
    d.bbox.center.position.x, d.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
    d.bbox.size_x, d.bbox.size_y = x2 - x1, y2 - y1
    arr.detections.append(d)
    return arr


def start_recognizer_alone(ros, tmp_path, ns, gallery, tracking=False):
    params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "gallery_path": str(gallery), "tracking": tracking})
    rec = start("face_recognizer", tmp_path, node_args(ns, params))
    ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
    img_pub = ros.publisher(Image, f"{ns}/image")
    det_pub = ros.publisher(Detection2DArray, f"{ns}/faces/detections")
    assert wait_for_subscribers(img_pub, 1, 90) and wait_for_subscribers(det_pub, 1, 30), \
        rec.output()
    assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
    assert ros.wait_connected(f"{ns}/face_recognizer"), rec.output()
    return rec, ids, img_pub, det_pub


def test_recognizer_finds_landmarks_for_boxes_from_another_detector(
        ros, photos, galleries, core_detector, tmp_path):
    ns = unique_ns("/foreign_boxes")
    rec, ids, img_pub, det_pub = start_recognizer_alone(ros, tmp_path, ns, galleries["both"])
    try:
        frame = fit_640x480(cv2.imread(str(photos / "obama3.jpg")))
        (face,) = core_detector.detect(frame)
        msg = image_msg(frame, T0 + 20 * 10**9)
        # Detections first, image once they wait in the pair buffer: either order pairs.
        det_pub.publish(box_only(msg.header, face.box, "track-17"))
        wait_stat(ros, f"{ns}/face_recognizer", "pending_detections", 1, rec)
        arr = lock_step(img_pub, ids, msg, rec)
        assert names_of(arr) == ["obama"]
        assert arr.detections[0].id == "track-17"  # the sender's id, handed on
    finally:
        assert rec.stop() in (0, -2), rec.log_path.read_text()


def test_container_runs_both_nodes_and_missing_gallery_means_unknown(ros, photos, tmp_path):
    ns = unique_ns("/container_test")
    params = write_params(tmp_path / "params.yaml", "*", {
        "qos_reliability": "reliable", "gallery_path": str(tmp_path / "nobody.json"),
        "create_gallery": True})  # without it a missing gallery is refused at configure
    proc = start("face_perception_container", tmp_path, node_args(ns, params))
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2, 120), proc.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), proc.output()
        assert ros.wait_connected(f"{ns}/face_detector", f"{ns}/face_recognizer"), \
            proc.output()
        for i, frame in enumerate(frames_from(photos, QUERY)):
            arr = lock_step(pub, ids, image_msg(frame, T0 + (30 + i) * 10**9), proc)
            assert names_of(arr) == ["unknown"]
        assert "nobody.json not found" in proc.output()
        assert proc.alive()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_recognizer_with_another_models_gallery_runs_and_says_why(ros, photos, galleries,
                                                                  tmp_path):
    ns = unique_ns("/wrong_gallery")
    rec, ids, img_pub, det_pub = start_recognizer_alone(ros, tmp_path, ns,
                                                        galleries["other_model"])
    try:
        msg = image_msg(frames_from(photos, ["obama2.jpg"])[0], T0 + 40 * 10**9)
        img_pub.publish(msg)
        arr = lock_step(det_pub, ids, box_only(msg.header, (245.0, 100.0, 395.0, 300.0)), rec)
        assert names_of(arr) == ["unknown"]
        assert "not usable" in rec.output() and "some_other_model" in rec.output()
    finally:
        assert rec.stop() in (0, -2), rec.log_path.read_text()
