"""face_recognizer names by the open-set rule stored in its gallery file (real detector and
recognizer processes, frames sent in lock step over reliable QoS)."""
import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed")

from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

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
from test.test_ros_detector import answered, frames_from, image_msg  # noqa: E402
from test.test_ros_recognizer import labels, names_of  # noqa: E402

T0 = 12_000 * 10**9
FRAMES = ["obama2.jpg", "biden.jpg"]


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    listener = Listener("open_set_test_listener")
    yield listener
    listener.close()
    rclpy.shutdown()


@pytest.fixture(scope="module")
def gallery_with_rule(photos, tmp_path_factory):
    """obama + biden, with a stored rule whose threshold lies between the similarity of the
    obama2 frame (below: unknown) and of the biden frame (above: named), measured here with
    the same detector and embedder the node runs."""
    from face_perception.detection import Detector
    from face_perception.gallery import Gallery
    from face_perception.recognition import Embedder, Recognizer

    detector, embedder = Detector(), Embedder("dlib_resnet")
    rec = Recognizer(embedder, None, detector=detector)
    g = Gallery("dlib_resnet", 128)
    for name, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        img = cv2.imread(str(photos / photo))
        g.add(name, rec.embed(img, detector.detect(img)))
    sims = []
    for frame, name in zip(frames_from(photos, FRAMES), ("obama", "biden")):
        (face,) = detector.detect(frame)
        sims.append(float(rec.embed(frame, [face])[0] @ g.mean(name)))
    assert sims[0] + 0.004 < sims[1], sims  # room for a threshold between them
    threshold = round((sims[0] + sims[1]) / 2, 4)
    g.set_open_set({"threshold": threshold, "margin": 0.02, "evidence": {"note": "test"}})
    return g.save(tmp_path_factory.mktemp("rule") / "people.json"), threshold


def test_recognizer_node_names_by_the_galleries_stored_rule(ros, photos, gallery_with_rule,
                                                           tmp_path):
    gallery, threshold = gallery_with_rule
    ns = unique_ns("/open_set")
    det_params = write_params(tmp_path / "det.yaml", "face_detector",
                              {"qos_reliability": "reliable"})
    rec_params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "qos_depth": 5, "gallery_path": str(gallery),
        "tracking": False})  # two unrelated photos: each frame judged alone
    det = start("face_detector", tmp_path, node_args(ns, det_params))
    rec = start("face_recognizer", tmp_path, node_args(ns, rec_params), tag="_rec")
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        infos = ros.listen(LabelInfo, f"{ns}/faces/label_info", LATCHED)
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2, 120), det.output() + rec.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        assert ros.wait_connected(f"{ns}/face_detector", f"{ns}/face_recognizer"), rec.output()
        stamps = [T0 + i * 10**9 for i in range(len(FRAMES))]
        for frame, stamp in zip(frames_from(photos, FRAMES), stamps):
            pub.publish(image_msg(frame, stamp))  # lock step: next frame once this one is done
            assert until(lambda s=stamp: answered(ids, s), 90, rec), rec.output()
        assert [names_of(answered(ids, s)[0]) for s in stamps] == [["unknown"], ["biden"]]
        assert len(ids) == len(FRAMES)
        assert until(lambda: infos, 10), rec.output()
        assert np.isclose(infos[-1].threshold, threshold, atol=1e-6)
        assert sorted(labels(infos[-1])) == ["biden", "obama", "unknown"]
        assert f"open-set rule OpenSetRule(threshold={threshold}, margin=0.02) from the " \
               "gallery" in rec.output()
    finally:
        for p in (det, rec):
            assert p.stop() in (0, -2), p.log_path.read_text()


def test_recognizer_node_margin_parameter_overrides_the_galleries_rule(ros, photos,
                                                                        gallery_with_rule,
                                                                        tmp_path):
    """A margin no face can clear (obama and biden are never 0.9 apart): every face unknown."""
    gallery, threshold = gallery_with_rule
    ns = unique_ns("/open_set_margin")
    det_params = write_params(tmp_path / "det.yaml", "face_detector",
                              {"qos_reliability": "reliable"})
    rec_params = write_params(tmp_path / "rec.yaml", "face_recognizer", {
        "qos_reliability": "reliable", "qos_depth": 5, "gallery_path": str(gallery),
        "tracking": False, "margin": 0.9})
    det = start("face_detector", tmp_path, node_args(ns, det_params))
    rec = start("face_recognizer", tmp_path, node_args(ns, rec_params), tag="_rec")
    try:
        ids = ros.listen(Detection2DArray, f"{ns}/faces/identities")
        pub = ros.publisher(Image, f"{ns}/image")
        assert wait_for_subscribers(pub, 2, 120), det.output() + rec.output()
        assert ros.wait_matched(f"{ns}/faces/identities"), rec.output()
        assert ros.wait_connected(f"{ns}/face_detector", f"{ns}/face_recognizer"), rec.output()
        stamps = [T0 + i * 10**9 for i in range(len(FRAMES))]
        for frame, stamp in zip(frames_from(photos, FRAMES), stamps):
            pub.publish(image_msg(frame, stamp))  # lock step
            assert until(lambda s=stamp: answered(ids, s), 90, rec), rec.output()
        assert [names_of(answered(ids, s)[0]) for s in stamps] == [["unknown"], ["unknown"]]
        assert f"open-set rule OpenSetRule(threshold={threshold}, margin=0.9) from the " \
               "explicit+gallery" in rec.output()
    finally:
        for p in (det, rec):
            assert p.stop() in (0, -2), p.log_path.read_text()
