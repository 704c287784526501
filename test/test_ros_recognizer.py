"""face_recognizer (with face_detector, and in the container) as real processes: identities for
replayed photos, latched LabelInfo, gallery reload on change and by service, boxes from a foreign
detector, and a missing gallery."""
import time

import cv2
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402
from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo  # noqa: E402

from face_perception.bag import rosbag_io  # noqa: E402
from test.ros_harness import (  # noqa: E402
    LATCHED,
    Listener,
    node_args,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    write_params,
)
from test.test_ros_detector import (  # noqa: E402
    answered,
    fit_640x480,
    frames_from,
    image_msg,
    set_params,
)

T0 = 9_000 * 10**9
QUERY = ("obama2.jpg", "obama3.jpg", "biden.jpg")
EXPECTED = ["obama", "obama", "biden"]


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    listener = Listener("recognizer_test_listener")
    yield listener
    listener.close()
    rclpy.shutdown()


@pytest.fixture(scope="module")
def galleries(photos, tmp_path_factory):
    """Real galleries enrolled with the core API: both people, obama only, another model's."""
    from face_perception.detection import Detector
    from face_perception.gallery import Gallery
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.recognition.recognizer import model_id_of

    folder = tmp_path_factory.mktemp("galleries")
    embedder = Embedder("dlib_resnet")
    rec = Recognizer(embedder, None, detector=Detector())
    model_id, size = model_id_of(embedder.meta), int(embedder.meta.embedding_size)
    both, obama_only = Gallery(model_id, size), Gallery(model_id, size)
    for name, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        img = cv2.imread(str(photos / photo))
        (face,) = rec.detector.detect(img)
        emb = rec.embed(img, [face])
        both.add(name, emb)
        if name == "obama":
            obama_only.add(name, emb)
    other = Gallery("some_other_model", size)
    other.add("obama", emb)
    return {"both": both.save(folder / "both.json"),
            "obama_only": obama_only.save(folder / "obama_only.json"),
            "other_model": other.save(folder / "other.json"), "folder": folder}


def names_of(arr):
    return [d.results[0].hypothesis.class_id for d in arr.detections]


def labels(info):
    return [c.class_name for c in info.class_map]


def replay_bag(tmp_path, photos, topic, first_stamp):
    frames = [(first_stamp + i * 10**8, f) for i, f in enumerate(frames_from(photos, QUERY))]
    bag = rosbag_io.write_image_bag(tmp_path / "query_bag", frames, topic="/camera/image_raw")
    return start("face_perception_replay", tmp_path, [
        str(bag), "--topic", topic, "--stamps", "original", "--rate", "2", "--qos", "reliable",
        "--wait-subscribers", "2"], tag="_replay")  # detector + recognizer


def assert_identities(ids, stamps, procs, diags=()):
    ok = until(lambda: all(answered(ids, s) for s in stamps), 120)
    seen = {s.name: {kv.key: kv.value for kv in s.values} for a in list(diags)[-4:]
            for s in a.status}
    assert ok, "\n\n".join(p.output()[-2500:] for p in procs) + f"\n{seen}\n{len(ids)}"
    for s, want in zip(stamps, EXPECTED):
        arr = answered(ids, s)[0]
        assert arr.header.frame_id == "camera"
        assert names_of(arr) == [want], arr
        det = arr.detections[0]
        assert det.header == arr.header
        assert 0.5 < det.results[0].hypothesis.score <= 1.0
        assert det.bbox.size_x > 20 and det.id.startswith('{"landmarks":')


@pytest.mark.timeout(300)
def test_detector_and_recognizer_name_replayed_people_and_follow_gallery_changes(
        ros, photos, galleries, tmp_path):
    ns = unique_ns("/rec_test")
    from face_perception.gallery import Gallery
    gallery = tmp_path / "live" / "people.json"
    Gallery.load(galleries["both"]).save(gallery)
    det_params = write_params(tmp_path / "det.yaml", "face_detector",
                              {"qos_reliability": "reliable"})
    rec_params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "qos_depth": 5, "gallery_path": str(gallery),
        "gallery_poll_period": 0.5})
    det = start("face_detector", tmp_path, node_args(ns, det_params))
    rec = start("face_recognizer", tmp_path, node_args(ns, rec_params))
    procs = (det, rec)
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        infos = ros.listen(LabelInfo, f"{ns}/faces/label_info", LATCHED)
        diags = ros.listen(DiagnosticArray, "/diagnostics")
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        replay = replay_bag(tmp_path, photos, f"{ns}/image", T0)
        stamps = [T0 + i * 10**8 for i in range(len(QUERY))]
        assert_identities(ids, stamps, procs, diags)
        until(lambda: not replay.alive(), 30)
        assert replay.stop() == 0, replay.log_path.read_text()
        # Latched LabelInfo: reaches this late subscriber, lists unknown then the gallery.
        assert until(lambda: infos, 10), rec.output()
        assert sorted(labels(infos[-1])) == ["biden", "obama", "unknown"]
        assert labels(infos[-1])[0] == "unknown"

        # The gallery file changes (re-enrolled without biden): the node reloads it by itself.
        time.sleep(0.05)  # a distinct mtime even on coarse-timestamp file systems
        Gallery.load(galleries["obama_only"]).save(gallery)
        assert until(lambda: labels(infos[-1]) == ["unknown", "obama"], 20), rec.output()
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2)
        biden = frames_from(photos, ["biden.jpg"])[0]
        pub.publish(image_msg(biden, T0 + 10 * 10**9))
        assert until(lambda: answered(ids, T0 + 10 * 10**9), 60, rec), rec.output()
        assert names_of(answered(ids, T0 + 10 * 10**9)[0]) == ["unknown"]

        # The reload service reports what it loaded.
        res = ros.call(Trigger, f"{ns}/face_recognizer/reload_gallery", Trigger.Request())
        assert res.success and "1 identities" in res.message, res.message

        # A gallery of another model is refused and the current one stays.
        (result,) = set_params(ros, f"{ns}/face_recognizer",
                               gallery_path=str(galleries["other_model"]))
        assert not result.successful and "some_other_model" in result.reason, result.reason
        # A good one is taken at run time, LabelInfo follows.
        (result,) = set_params(ros, f"{ns}/face_recognizer", gallery_path=str(galleries["both"]))
        assert result.successful, result.reason
        assert until(lambda: sorted(labels(infos[-1])) == ["biden", "obama", "unknown"], 10)
        pub.publish(image_msg(biden, T0 + 11 * 10**9))
        assert until(lambda: answered(ids, T0 + 11 * 10**9), 60, rec), rec.output()
        assert names_of(answered(ids, T0 + 11 * 10**9)[0]) == ["biden"]
    finally:
        for p in procs:
            assert p.stop() in (0, -2), p.log_path.read_text()


@pytest.mark.timeout(180)
def test_recognizer_finds_landmarks_for_boxes_from_another_detector(ros, photos, galleries,
                                                                    tmp_path):
    ns = unique_ns("/foreign_boxes")
    params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "gallery_path": str(galleries["both"])})
    rec = start("face_recognizer", tmp_path, node_args(ns, params))
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        img_pub = ros.publisher(Image, f"{ns}/image")
        det_pub = ros.publisher(Detection2DArray, f"{ns}/faces/detections")
        assert wait_for_subscribers(img_pub, 1, 90) and wait_for_subscribers(det_pub, 1, 30), \
            rec.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        from face_perception.detection import Detector
        frame = fit_640x480(cv2.imread(str(photos / "obama3.jpg")))
        (face,) = Detector().detect(frame)
        msg = image_msg(frame, T0 + 20 * 10**9)
        arr = Detection2DArray(header=msg.header)
        d = Detection2D(header=msg.header, id="track-17")  # box only: no landmarks
        x1, y1, x2, y2 = (float(v) for v in face.box)
        d.bbox.center.position.x, d.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        d.bbox.size_x, d.bbox.size_y = x2 - x1, y2 - y1
        arr.detections.append(d)
        det_pub.publish(arr)  # detections first: pairing works in either order
        time.sleep(0.2)
        img_pub.publish(msg)
        assert until(lambda: answered(ids, T0 + 20 * 10**9), 60, rec), rec.output()
        assert names_of(answered(ids, T0 + 20 * 10**9)[0]) == ["obama"]
    finally:
        assert rec.stop() in (0, -2), rec.log_path.read_text()


@pytest.mark.timeout(240)
def test_container_runs_both_nodes_and_missing_gallery_means_unknown(ros, photos, tmp_path):
    ns = unique_ns("/container_test")
    params = write_params(tmp_path / "params.yaml", "*", {
        "qos_reliability": "reliable", "gallery_path": str(tmp_path / "nobody.json")})
    proc = start("face_perception_container", tmp_path, node_args(ns, params))
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2, 120), proc.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), proc.output()
        for i, frame in enumerate(frames_from(photos, QUERY)):
            pub.publish(image_msg(frame, T0 + (30 + i) * 10**9))
            time.sleep(0.7)
        stamps = [T0 + (30 + i) * 10**9 for i in range(len(QUERY))]
        assert until(lambda: all(answered(ids, s) for s in stamps), 90, proc), proc.output()
        for s in stamps:
            assert names_of(answered(ids, s)[0]) == ["unknown"]
        assert "nobody.json not found" in proc.output()
        assert proc.alive()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


@pytest.mark.timeout(180)
def test_recognizer_with_another_models_gallery_runs_and_says_why(ros, photos, galleries,
                                                                  tmp_path):
    ns = unique_ns("/wrong_gallery")
    params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "gallery_path": str(galleries["other_model"])})
    rec = start("face_recognizer", tmp_path, node_args(ns, params))
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        img_pub = ros.publisher(Image, f"{ns}/image")
        det_pub = ros.publisher(Detection2DArray, f"{ns}/faces/detections")
        assert wait_for_subscribers(img_pub, 1, 90) and wait_for_subscribers(det_pub, 1, 30), \
            rec.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        msg = image_msg(frames_from(photos, ["obama2.jpg"])[0], T0 + 40 * 10**9)
        arr = Detection2DArray(header=msg.header)
        d = Detection2D(header=msg.header)
        d.bbox.center.position.x, d.bbox.center.position.y = 320.0, 200.0
        d.bbox.size_x, d.bbox.size_y = 150.0, 200.0
        arr.detections.append(d)
        img_pub.publish(msg)
        det_pub.publish(arr)
        assert until(lambda: answered(ids, T0 + 40 * 10**9), 60, rec), rec.output()
        assert names_of(answered(ids, T0 + 40 * 10**9)[0]) == ["unknown"]
        assert "not usable" in rec.output() and "some_other_model" in rec.output()
    finally:
        assert rec.stop() in (0, -2), rec.log_path.read_text()
