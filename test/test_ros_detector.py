"""face_detector as a real process: detections for replayed photos, run-time parameters, bad
frames, a flood of frames, lifecycle transitions and frame skipping.

Lock step over reliable QoS: the next frame only after the answer to the previous one (or after
the node's ~/get_stats counted it), so every count is exact on any machine.
"""
import time

import cv2
import numpy as np
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from face_perception.bag import rosbag_io
from face_perception.ros.conversions import detection_array_to_faces
from test.ros_harness import (
    answered,
    frames_from,
    get_params,
    image_msg,
    lock_step,
    node_args,
    rss_kib,
    set_params,
    stamp_ns,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    wait_stat,
    write_params,
)

NS = unique_ns("/det_test")
NODE = f"{NS}/face_detector"
PHOTOS = ("obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg")
T0 = 1_000 * 10**9


@pytest.fixture(scope="module")
def detector(ros, tmp_path_factory):
    logs = tmp_path_factory.mktemp("detector")
    params = write_params(logs / "params.yaml", "face_detector", {
        "qos_reliability": "reliable", "qos_depth": 10, "score_threshold": 0.5})
    proc = start("face_detector", logs, node_args(NS, params))
    dets = ros.listen(Detection2DArray, f"{NS}/faces/detections")
    pub = ros.publisher(Image, f"{NS}/image")
    assert wait_for_subscribers(pub, 1, timeout=90), proc.output()
    assert ros.wait_matched(f"{NS}/faces/detections"), proc.output()
    assert ros.wait_connected(f"{NS}/face_detector"), proc.output()
    yield {"proc": proc, "dets": dets, "pub": pub, "logs": logs}
    assert proc.stop() in (0, -2), proc.log_path.read_text()


def ask(det, msg):
    return lock_step(det["pub"], det["dets"], msg, det["proc"])


def assert_same_as_core(arr, face):
    """The node's answer carries the core Detector's face in the standard fields."""
    det = arr.detections[0]
    assert det.header == arr.header
    assert det.results[0].hypothesis.class_id == "face"
    assert det.results[0].hypothesis.score == pytest.approx(face.score, abs=1e-5)
    x1, y1, x2, y2 = face.box
    assert det.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=0.01)
    assert det.bbox.center.position.y == pytest.approx((y1 + y2) / 2, abs=0.01)
    assert (det.bbox.size_x, det.bbox.size_y) == pytest.approx((x2 - x1, y2 - y1), abs=0.01)
    np.testing.assert_allclose(detection_array_to_faces(arr)[0].landmarks, face.landmarks,
                               atol=1e-3)


def test_replayed_bag_frames_reach_the_detector_and_get_the_core_detectors_faces(
        ros, detector, photos, core_detector, tmp_path):
    frames = frames_from(photos, PHOTOS)
    stamps = [T0 + i * 10**8 for i in range(len(PHOTOS))]
    bag = rosbag_io.write_image_bag(tmp_path / "photos_bag", list(zip(stamps, frames)),
                                    topic="/cam/image")
    # The replay tool delivers every frame of the bag, reliably, with its original stamp ...
    topic = f"{NS}/replayed"
    replayed = ros.listen(Image, topic)
    replay = start("face_perception_replay", tmp_path, [
        str(bag), "--topic", topic, "--stamps", "original", "--rate", "0",
        "--qos", "reliable", "--wait-subscribers", "1"])
    assert replay.wait(120) == 0, replay.output()
    assert until(lambda: len(replayed) == len(PHOTOS), 30), replay.output()
    assert [stamp_ns(m.header) for m in replayed] == stamps
    # ... and the detector answers each of them (lock step) with the core Detector's faces.
    for msg, frame in zip(list(replayed), frames):
        assert bytes(msg.data) == frame.tobytes()
        arr = ask(detector, msg)
        assert arr.header.frame_id == "camera" and len(arr.detections) == 1, arr
        (face,) = core_detector.detect(frame)
        assert_same_as_core(arr, face)


def test_detector_parameters_change_at_run_time_and_bad_values_are_rejected(
        ros, detector, photos):
    frame = frames_from(photos, ["obama.jpg"])[0]
    results = set_params(ros, NODE, score_threshold=1.5)
    assert not results[0].successful and "score_threshold" in results[0].reason
    results = set_params(ros, NODE, backend="tensorrt")
    assert not results[0].successful and "onnx" in results[0].reason
    # Valid + invalid in one atomic call: nothing is applied.
    (result,) = set_params(ros, NODE, atomically=True, nms_threshold=0.3, target_size=99999)
    assert not result.successful
    # Each value valid alone, invalid together (target_size > max_size): rejected with a reason.
    (result,) = set_params(ros, NODE, atomically=True, nms_threshold=0.3, max_size=320)
    assert not result.successful and "max_size" in result.reason
    assert get_params(ros, NODE, ["nms_threshold", "score_threshold"]) == pytest.approx(
        {"nms_threshold": 0.4, "score_threshold": 0.5})

    # A threshold above every face score: the next frame has no detections.
    assert set_params(ros, NODE, score_threshold=1.0)[0].successful
    assert get_params(ros, NODE, ["score_threshold"]) == {"score_threshold": 1.0}
    assert len(ask(detector, image_msg(frame, T0 + 50 * 10**9)).detections) == 0
    assert set_params(ros, NODE, score_threshold=0.5)[0].successful
    assert len(ask(detector, image_msg(frame, T0 + 51 * 10**9)).detections) == 1


def test_detector_survives_bad_frames_and_answers_the_next_good_one(ros, detector, photos):
    bad = []
    msg = Image(height=48, width=64, encoding="32FC1", step=256)  # a depth image
    msg.data = bytes(48 * 256)
    bad.append(msg)
    msg = Image(height=480, width=640, encoding="bgr8", step=1920)
    msg.data = bytes(1000)  # truncated
    bad.append(msg)
    msg = Image(height=0, width=0, encoding="bgr8", step=0)  # zero size
    bad.append(msg)
    msg = Image(height=10, width=10, encoding="bgr8", step=10)  # step smaller than a row
    msg.data = bytes(100)
    bad.append(msg)
    before = ros.stats(NODE)
    for i, msg in enumerate(bad):
        msg.header.stamp.sec = 2_000 + i
        detector["pub"].publish(msg)
        # One at a time: the next bad frame only once this one was counted (never stale).
        wait_stat(ros, NODE, "dropped_bad", before["dropped_bad"] + i + 1, detector["proc"])
    good = image_msg(frames_from(photos, ["biden.jpg"])[0], 3_000 * 10**9)
    assert len(ask(detector, good).detections) == 1
    after = ros.stats(NODE)
    assert after["processed"] - before["processed"] == 1
    assert after["received"] - before["received"] == len(bad) + 1
    assert after["model_errors"] == before["model_errors"]
    assert after["refused_encoding"] - before["refused_encoding"] == 1
    for i in range(len(bad)):
        assert not answered(detector["dets"], (2_000 + i) * 10**9)
    out = detector["proc"].output()
    assert "unsupported image encoding '32FC1' (a depth or 16-bit grey" in out
    assert "truncated" in out


def test_detector_finds_the_face_in_camera_encodings(ros, detector, photos):
    """A photo as a YUYV, UYVY, NV21 and Bayer camera sends it: one face, at the bgr8 box."""
    frame = frames_from(photos, ["biden.jpg"])[0]
    h, w = frame.shape[:2]
    i420 = cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    vu = np.dstack([i420[h * w * 5 // 4:], i420[h * w: h * w * 5 // 4]]).reshape(-1)
    bayer = np.empty((h, w), np.uint8)
    for (dy, dx), c in zip([(0, 0), (0, 1), (1, 0), (1, 1)], (2, 1, 1, 0)):  # R G / G B
        bayer[dy::2, dx::2] = frame[dy::2, dx::2, c]
    payloads = {"yuyv": (cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_YUY2), w * 2),
                "uyvy": (cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_UYVY), w * 2),
                "nv21": (np.concatenate([i420[: h * w], vu]), w),
                "bayer_rggb8": (bayer, w)}
    reference = ask(detector, image_msg(frame, 3_100 * 10**9)).detections
    assert len(reference) == 1
    for i, (encoding, (data, step)) in enumerate(payloads.items()):
        msg = Image(height=h, width=w, encoding=encoding, step=step)
        msg.header.stamp.sec = 3_101 + i
        msg.header.frame_id = "camera"
        msg.data = np.ascontiguousarray(data).tobytes()
        dets = ask(detector, msg).detections
        assert len(dets) == 1, encoding
        box = dets[0].bbox
        assert abs(box.center.position.x - reference[0].bbox.center.position.x) < 4, encoding
        assert abs(box.size_x - reference[0].bbox.size_x) < 6, encoding


def test_detector_flood_keeps_queue_and_memory_bounded(ros, detector, photos):
    """300 frames as fast as the test can publish: the node never queues them up. How many it
    processes depends on the machine (exact stale counting: test_frame_worker.py); what holds
    everywhere: every frame that arrived is accounted once, the newest is always answered, and
    memory stays bounded."""
    frame = frames_from(photos, ["obama2.jpg"])[0]
    pid = detector["proc"].pid
    ask(detector, image_msg(frame, 4_000 * 10**9))  # warm
    rss_before = rss_kib(pid)
    base = ros.stats(NODE)
    count = 300
    first = 5_000 * 10**9
    for i in range(count):
        detector["pub"].publish(image_msg(frame, first + i * 10**6))
    last = first + (count - 1) * 10**6
    # The newest frame always wins: it is answered; its answer comes after all earlier ones.
    assert until(lambda: answered(detector["dets"], last), 120, detector["proc"]), \
        detector["proc"].output()[-2000:]
    d = ros.stats(NODE)  # asked after the last answer arrived, which was counted before it left
    delta = {k: d[k] - base[k] for k in ("received", "processed", "skipped_stale", "dropped_bad",
                                         "skipped_by_rate", "model_errors")}
    answered_count = sum(1 for a in list(detector["dets"])
                         if first <= stamp_ns(a.header) <= last)
    assert delta["received"] == delta["processed"] + delta["skipped_stale"], delta
    assert delta["dropped_bad"] == delta["skipped_by_rate"] == delta["model_errors"] == 0, delta
    assert delta["processed"] == answered_count, (delta, answered_count)
    assert 1 <= delta["received"] <= count, delta
    growth_mib = (rss_kib(pid) - rss_before) / 1024
    assert growth_mib < 60, f"RSS grew {growth_mib:.1f} MiB under a {count}-frame flood"


def test_lifecycle_subscription_exists_only_while_active(ros, photos, tmp_path):
    ns = unique_ns("/lifecycle_test")
    node = f"{ns}/face_detector"
    params = write_params(tmp_path / "params.yaml", "face_detector", {
        "autostart": False, "qos_reliability": "reliable"})
    proc = start("face_detector", tmp_path, node_args(ns, params))
    try:
        pub = ros.publisher(Image, f"{ns}/image")

        def state():
            return ros.call(GetState, f"{node}/get_state", GetState.Request(),
                            timeout=90).current_state.label

        def change(tid):
            return ros.call(ChangeState, f"{node}/change_state",
                            ChangeState.Request(transition=Transition(id=tid))).success

        def inputs():  # the node's own list of subscriptions
            return ros.stats(node)["inputs"]
        assert state() == "unconfigured" and inputs() == []
        assert change(Transition.TRANSITION_CONFIGURE)
        assert state() == "inactive" and inputs() == []
        assert change(Transition.TRANSITION_ACTIVATE)
        assert inputs() == [f"{ns}/image"]
        assert wait_for_subscribers(pub, 1, timeout=20)
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        assert ros.wait_matched(f"{ns}/faces/detections")
        assert ros.wait_connected(node), proc.output()
        msg = image_msg(frames_from(photos, ["obama3.jpg"])[0], 7_000 * 10**9)
        assert len(lock_step(pub, dets, msg, proc).detections) == 1
        assert change(Transition.TRANSITION_DEACTIVATE)
        assert inputs() == []
        assert until(lambda: pub.get_subscription_count() == 0, 20)
        assert change(Transition.TRANSITION_CLEANUP)
        assert state() == "unconfigured"
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_compressed_transport_parameter_subscribes_compressed_images(ros, photos, tmp_path):
    ns = unique_ns("/compressed_test")
    params = write_params(tmp_path / "params.yaml", "face_detector", {
        "image_transport": "compressed", "qos_reliability": "reliable"})
    proc = start("face_detector", tmp_path, node_args(ns, params))
    try:
        pub = ros.publisher(CompressedImage, f"{ns}/image/compressed")
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        assert wait_for_subscribers(pub, 1, timeout=90), proc.output()
        assert ros.wait_matched(f"{ns}/faces/detections"), proc.output()
        assert ros.wait_connected(f"{ns}/face_detector"), proc.output()
        img = frames_from(photos, ["biden.jpg"])[0]
        msg = CompressedImage(format="jpeg")
        msg.header.stamp.sec = 8_000
        msg.data = cv2.imencode(".jpg", img)[1].tobytes()
        assert len(lock_step(pub, dets, msg, proc).detections) == 1
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_invalid_params_file_keeps_the_node_unconfigured_with_a_clear_message(tmp_path):
    # Up and unconfigured, so a lifecycle manager gets answers (test/test_ros_lifecycle.py).
    params = write_params(tmp_path / "params.yaml", "face_detector", {"backend": "tensorrt"})
    proc = start("face_detector", tmp_path, node_args(unique_ns("/bad_params"), params))
    try:
        assert until(lambda: "configure refused" in proc.output(), 120, proc), proc.output()
        assert "backend must be one of ['onnx', 'onnx-int8', 'torch'], got 'tensorrt'" in \
            proc.output()
        assert proc.alive()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_annotated_image_is_published_only_to_subscribers_with_the_frame_header(
        ros, detector, photos):
    frame = frames_from(photos, ["obama.jpg"])[0]
    ask(detector, image_msg(frame, 6_000 * 10**9))
    topic = f"{NS}/faces/detections/image"
    annotated = ros.listen(Image, topic)
    assert ros.wait_matched(topic)
    # The node draws once it has discovered this subscriber (DDS discovery is asynchronous on
    # its side): frames go in lock step until the first drawing is back.
    sent = {}
    for i in range(1, 101):
        msg = image_msg(frame, (6_000 + i) * 10**9)
        sent[stamp_ns(msg.header)] = msg
        ask(detector, msg)
        if annotated:
            break
    assert annotated, "no annotated image in 100 frames"
    out = annotated[0]
    assert out.header == sent[stamp_ns(out.header)].header
    assert (out.height, out.width, out.encoding) == (480, 640, "bgr8")
    drawn = np.frombuffer(bytes(out.data), np.uint8).reshape(480, 640, 3)
    changed = (drawn != frame).any(axis=2)
    assert 0.001 < changed.mean() < 0.2  # box, landmarks and score drawn; the rest untouched
    assert not answered(annotated, 6_000 * 10**9)


def test_frame_skipping_parameter_processes_one_frame_in_n(ros, detector, photos):
    frame = frames_from(photos, ["obama3.jpg"])[0]
    assert set_params(ros, NODE, process_every_n=3)[0].successful
    try:
        before = ros.stats(NODE)
        stamps = [(10_000 + i) * 10**9 for i in range(7)]
        for i, s in enumerate(stamps):
            if i % 3 == 0:  # the stride restarts with the change: frames 0, 3, 6 are processed
                ask(detector, image_msg(frame, s))
            else:
                detector["pub"].publish(image_msg(frame, s))
                wait_stat(ros, NODE, "received", before["received"] + i + 1, detector["proc"])
        after = ros.stats(NODE)
        assert [bool(answered(detector["dets"], s)) for s in stamps] == [
            True, False, False, True, False, False, True]
        assert after["skipped_by_rate"] - before["skipped_by_rate"] == 4
        assert after["processed"] - before["processed"] == 3
    finally:
        assert set_params(ros, NODE, process_every_n=1)[0].successful
    ask(detector, image_msg(frame, 10_100 * 10**9))


def test_replay_tool_publishes_image_files_with_fresh_stamps(ros, photos, tmp_path):
    files = [photos / "obama.jpg", photos / "biden.jpg"]
    topic = unique_ns("/replay_files") + "/image"
    got = ros.listen(Image, topic)
    before = time.time_ns()
    replay = start("face_perception_replay", tmp_path, [
        *map(str, files), "--topic", topic, "--frame-id", "replay_files", "--rate", "0",
        "--loop", "2", "--wait-subscribers", "1"])
    assert replay.wait(120) == 0, replay.output()
    assert "published 4 frames" in replay.output()
    assert until(lambda: len(got) == 4, 30)
    stamps = [stamp_ns(m.header) for m in got]
    assert all(s >= before for s in stamps) and stamps == sorted(set(stamps))
    assert [m.header.frame_id for m in got] == ["replay_files"] * 4
    shapes = [(m.height, m.width) for m in got]
    want = [cv2.imread(str(f)).shape[:2] for f in files] * 2
    assert shapes == want


def test_backbone_parameter_switches_the_node_to_yunet_with_the_core_faces(ros, detector,
                                                                           photos):
    from face_perception.detection import Detector

    frame = frames_from(photos, ["biden.jpg"])[0]
    assert set_params(ros, NODE, atomically=True, backbone="yunet",
                      score_threshold=0.87)[0].successful
    try:
        assert until(lambda: ros.stats(NODE)["model"].startswith("YuNet-n"), 120,
                     detector["proc"]), ros.stats(NODE)
        arr = ask(detector, image_msg(frame, 12_000 * 10**9))
        (face,) = Detector(backbone="yunet", max_size=640).detect(frame)
        assert len(arr.detections) == 1
        assert_same_as_core(arr, face)
    finally:
        assert set_params(ros, NODE, atomically=True, backbone="mnet",
                          score_threshold=0.5)[0].successful
    assert until(lambda: ros.stats(NODE)["model"].startswith("RetinaFace mnet"), 120,
                 detector["proc"])
    ask(detector, image_msg(frame, 12_001 * 10**9))
