"""face_detector as a real process: detections for replayed photos, run-time parameters, bad
frames, a flood of frames, lifecycle transitions and diagnostics."""
import time

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import (  # noqa: E402
    GetParameters,
    SetParameters,
    SetParametersAtomically,
)
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from face_perception.bag import rosbag_io  # noqa: E402
from test.ros_harness import (  # noqa: E402
    Listener,
    diagnostics_of,
    node_args,
    rss_kib,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    write_params,
)

NS = unique_ns("/det_test")
PHOTOS = ("obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg")
T0 = 1_000 * 10**9


def fit_640x480(img: np.ndarray) -> np.ndarray:
    """A photo letterboxed into a 640x480 camera-sized frame."""
    scale = min(640 / img.shape[1], 480 / img.shape[0])
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def frames_from(photos, names):
    return [fit_640x480(cv2.imread(str(photos / n))) for n in names]


def image_msg(img: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
    msg = Image(height=img.shape[0], width=img.shape[1], encoding="bgr8", step=img.shape[1] * 3)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.data = img.tobytes()
    return msg


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


@pytest.fixture(scope="module")
def ros():
    rclpy.init()
    listener = Listener("detector_test_listener")
    yield listener
    listener.close()
    rclpy.shutdown()


@pytest.fixture(scope="module")
def detector(ros, tmp_path_factory):
    logs = tmp_path_factory.mktemp("detector")
    params = write_params(logs / "params.yaml", "face_detector", {
        "qos_reliability": "reliable", "score_threshold": 0.5})
    proc = start("face_detector", logs, node_args(NS, params))
    dets = ros.listen(Detection2DArray, f"{NS}/faces/detections")
    diags = ros.listen(DiagnosticArray, "/diagnostics")
    pub = ros.publisher(Image, f"{NS}/image")
    assert wait_for_subscribers(pub, 1, timeout=90), proc.output()
    assert ros.wait_matched(f"{NS}/faces/detections"), proc.output()
    yield {"proc": proc, "dets": dets, "diags": diags, "pub": pub, "logs": logs}
    assert proc.stop() in (0, -2), proc.log_path.read_text()


def answered(dets, stamp: int):
    return [d for d in list(dets) if stamp_ns(d.header) == stamp]


def publish_and_wait(det, msg, timeout=30.0):
    det["pub"].publish(msg)
    stamp = stamp_ns(msg.header)
    assert until(lambda: answered(det["dets"], stamp), timeout, det["proc"]), \
        det["proc"].output()[-3000:]
    return answered(det["dets"], stamp)[0]


def set_params(ros, node: str, atomically: bool = False, **values):
    srv = SetParametersAtomically if atomically else SetParameters
    req = srv.Request()
    for name, value in values.items():
        pv = ParameterValue()
        if isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
        req.parameters.append(Parameter(name=name, value=pv))
    if atomically:
        return [ros.call(srv, f"{node}/set_parameters_atomically", req).result]
    return ros.call(srv, f"{node}/set_parameters", req).results


def get_param(ros, node: str, name: str):
    (value,) = ros.call(GetParameters, f"{node}/get_parameters",
                        GetParameters.Request(names=[name])).values
    return {ParameterType.PARAMETER_DOUBLE: value.double_value,
            ParameterType.PARAMETER_INTEGER: value.integer_value,
            ParameterType.PARAMETER_STRING: value.string_value,
            ParameterType.PARAMETER_BOOL: value.bool_value}[value.type]


@pytest.mark.timeout(240)
def test_detector_answers_replayed_bag_with_one_face_per_photo(detector, photos, tmp_path):
    bag = rosbag_io.write_image_bag(
        tmp_path / "photos_bag", [(T0 + i * 10**8, f) for i, f in
                                  enumerate(frames_from(photos, PHOTOS))], topic="/cam/image")
    replay = start("face_perception_replay", tmp_path, [
        str(bag), "--topic", f"{NS}/image", "--stamps", "original", "--rate", "3",
        "--qos", "reliable", "--wait-subscribers", "1"])
    stamps = [T0 + i * 10**8 for i in range(len(PHOTOS))]
    ok = until(lambda: all(answered(detector["dets"], s) for s in stamps), 90, detector["proc"])
    until(lambda: not replay.alive(), 30)
    assert replay.stop(timeout=30) == 0, replay.log_path.read_text()
    assert ok, detector["proc"].output()[-3000:]
    # The node's answer is the core Detector's answer for the same frame, carried in the
    # standard fields (box centre/size in pixels, class "face", score) plus landmarks in id.
    from face_perception.detection import Detector
    from face_perception.messages.face_fields import landmarks_from_field
    core = Detector()
    for s, frame in zip(stamps, frames_from(photos, PHOTOS)):
        arr = answered(detector["dets"], s)[0]
        assert arr.header.frame_id == "camera"
        assert len(arr.detections) == 1, arr
        det = arr.detections[0]
        (face,) = core.detect(frame)
        assert det.header == arr.header
        assert det.results[0].hypothesis.class_id == "face"
        assert det.results[0].hypothesis.score == pytest.approx(face.score, abs=1e-5)
        x1, y1, x2, y2 = face.box
        assert det.bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=0.01)
        assert det.bbox.center.position.y == pytest.approx((y1 + y2) / 2, abs=0.01)
        assert (det.bbox.size_x, det.bbox.size_y) == pytest.approx((x2 - x1, y2 - y1), abs=0.01)
        np.testing.assert_allclose(landmarks_from_field(det.id), face.landmarks, atol=0.06)


@pytest.mark.timeout(180)
def test_detector_parameters_change_at_run_time_and_bad_values_are_rejected(
        ros, detector, photos):
    node = f"{NS}/face_detector"
    frame = frames_from(photos, ["obama.jpg"])[0]
    results = set_params(ros, node, score_threshold=1.5)
    assert not results[0].successful and "score_threshold" in results[0].reason
    results = set_params(ros, node, backend="tensorrt")
    assert not results[0].successful and "onnx" in results[0].reason
    # Valid + invalid in one atomic call: nothing is applied.
    (result,) = set_params(ros, node, atomically=True, nms_threshold=0.3, target_size=99999)
    assert not result.successful
    # Each value valid alone, invalid together (target_size > max_size): rejected with a reason.
    (result,) = set_params(ros, node, atomically=True, nms_threshold=0.3, max_size=320)
    assert not result.successful and "max_size" in result.reason
    assert get_param(ros, node, "nms_threshold") == pytest.approx(0.4)
    assert get_param(ros, node, "score_threshold") == pytest.approx(0.5)

    # A threshold above every face score: the next frame has no detections.
    assert set_params(ros, node, score_threshold=1.0)[0].successful
    assert get_param(ros, node, "score_threshold") == 1.0
    arr = publish_and_wait(detector, image_msg(frame, T0 + 50 * 10**9))
    assert len(arr.detections) == 0
    assert set_params(ros, node, score_threshold=0.5)[0].successful
    arr = publish_and_wait(detector, image_msg(frame, T0 + 51 * 10**9))
    assert len(arr.detections) == 1


@pytest.mark.timeout(180)
def test_detector_survives_bad_frames_and_answers_the_next_good_one(ros, detector, photos):
    bad = []
    msg = Image(height=48, width=64, encoding="yuv422", step=128)
    msg.data = bytes(48 * 128)
    bad.append(msg)
    msg = Image(height=480, width=640, encoding="bgr8", step=1920)
    msg.data = bytes(1000)  # truncated
    bad.append(msg)
    msg = Image(height=0, width=0, encoding="bgr8", step=0)  # zero size
    bad.append(msg)
    msg = Image(height=10, width=10, encoding="bgr8", step=10)  # step smaller than a row
    msg.data = bytes(100)
    bad.append(msg)
    before = diagnostics_of(detector["diags"], f"{NS}/face_detector")
    dropped_before = int(before["dropped_bad"]) if before else 0
    for i, msg in enumerate(bad):
        msg.header.stamp.sec = 2_000 + i
        detector["pub"].publish(msg)
        time.sleep(0.3)  # one at a time, so none is replaced as stale
    good = image_msg(frames_from(photos, ["biden.jpg"])[0], 3_000 * 10**9)
    arr = publish_and_wait(detector, good)
    assert len(arr.detections) == 1
    assert detector["proc"].alive()
    for i in range(len(bad)):
        assert not answered(detector["dets"], (2_000 + i) * 10**9)

    def counted():
        diag = diagnostics_of(detector["diags"], f"{NS}/face_detector")
        return diag is not None and int(diag["dropped_bad"]) - dropped_before == len(bad)
    assert until(counted, 10), diagnostics_of(detector["diags"], f"{NS}/face_detector")
    out = detector["proc"].output()
    assert "unsupported image encoding 'yuv422'" in out
    assert "truncated" in out


@pytest.mark.timeout(240)
def test_detector_flood_keeps_queue_and_memory_bounded(ros, detector, photos):
    frame = frames_from(photos, ["obama2.jpg"])[0]
    node = f"{NS}/face_detector"
    pid = detector["proc"].popen.pid
    publish_and_wait(detector, image_msg(frame, 4_000 * 10**9))  # warm
    rss_before = rss_kib(pid)
    time.sleep(1.5)
    base = diagnostics_of(detector["diags"], node)
    count = 300
    for i in range(count):
        detector["pub"].publish(image_msg(frame, (5_000 * 10**9) + i * 10**6))
    last = (5_000 * 10**9) + (count - 1) * 10**6
    assert until(lambda: answered(detector["dets"], last), 60, detector["proc"]), \
        detector["proc"].output()[-2000:]

    time.sleep(2.5)  # the node is idle now; let a fresh 1 Hz diagnostics message arrive
    d = diagnostics_of(detector["diags"], node)
    received = int(d["received"]) - int(base["received"])
    processed = int(d["processed"]) - int(base["processed"])
    stale = int(d["skipped_stale"]) - int(base["skipped_stale"])
    answered_count = sum(1 for a in list(detector["dets"])
                         if 5_000 * 10**9 <= stamp_ns(a.header) <= last)
    # Every frame that reached the node was processed or dropped as stale; the rest were
    # overwritten in the keep-last subscription queue. Nothing queues up: far fewer frames
    # processed than sent.
    assert int(d["received"]) == int(d["processed"]) + int(d["skipped_stale"]) + \
        int(d["dropped_bad"]) + int(d["skipped_by_rate"]), d
    assert processed == answered_count, d
    assert 0 < received <= count and processed < count // 2, d
    assert stale + (count - received) > count // 2, d
    growth_mib = (rss_kib(pid) - rss_before) / 1024
    assert growth_mib < 60, f"RSS grew {growth_mib:.1f} MiB under a {count}-frame flood"


@pytest.mark.timeout(180)
def test_lifecycle_subscription_exists_only_while_active(ros, photos, tmp_path):
    ns = unique_ns("/lifecycle_test")
    params = write_params(tmp_path / "params.yaml", "face_detector", {
        "autostart": False, "qos_reliability": "reliable"})
    proc = start("face_detector", tmp_path, node_args(ns, params))
    try:
        pub = ros.publisher(Image, f"{ns}/image")
        node = f"{ns}/face_detector"

        def state():
            return ros.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label

        def change(tid):
            return ros.call(ChangeState, f"{node}/change_state",
                            ChangeState.Request(transition=Transition(id=tid))).success
        assert state() == "unconfigured"
        time.sleep(1.0)
        assert pub.get_subscription_count() == 0
        assert change(Transition.TRANSITION_CONFIGURE)
        assert state() == "inactive" and pub.get_subscription_count() == 0
        assert change(Transition.TRANSITION_ACTIVATE)
        assert wait_for_subscribers(pub, 1, timeout=20)
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        assert ros.wait_matched(f"{ns}/faces/detections")
        msg = image_msg(frames_from(photos, ["obama3.jpg"])[0], 7_000 * 10**9)
        pub.publish(msg)
        assert until(lambda: answered(dets, 7_000 * 10**9), 30, proc), proc.output()
        assert change(Transition.TRANSITION_DEACTIVATE)
        assert until(lambda: pub.get_subscription_count() == 0, 20)
        assert change(Transition.TRANSITION_CLEANUP)
        assert state() == "unconfigured"
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


@pytest.mark.timeout(120)
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
        img = frames_from(photos, ["biden.jpg"])[0]
        msg = CompressedImage(format="jpeg")
        msg.header.stamp.sec = 8_000
        msg.data = cv2.imencode(".jpg", img)[1].tobytes()
        pub.publish(msg)
        assert until(lambda: answered(dets, 8_000 * 10**9), 30, proc), proc.output()
        assert len(answered(dets, 8_000 * 10**9)[0].detections) == 1
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


@pytest.mark.timeout(60)
def test_invalid_params_file_stops_the_node_with_a_clear_message(tmp_path):
    params = write_params(tmp_path / "params.yaml", "face_detector", {"backend": "tensorrt"})
    proc = start("face_detector", tmp_path, node_args("/bad_params", params))
    assert until(lambda: not proc.alive(), 40), proc.output()
    code = proc.stop()
    out = proc.log_path.read_text()
    assert code == 2, out
    assert "backend must be one of ['onnx', 'torch'], got 'tensorrt'" in out


@pytest.mark.timeout(120)
def test_annotated_image_is_published_only_to_subscribers_with_the_frame_header(
        ros, detector, photos):
    frame = frames_from(photos, ["obama.jpg"])[0]
    publish_and_wait(detector, image_msg(frame, 6_000 * 10**9))
    topic = f"{NS}/faces/detections/image"
    annotated = ros.listen(Image, topic)
    assert until(lambda: ros.node.count_publishers(topic) == 1, 20)
    time.sleep(0.5)  # let the node see the new subscriber
    msg = image_msg(frame, 6_001 * 10**9)
    publish_and_wait(detector, msg)
    assert until(lambda: any(stamp_ns(a.header) == 6_001 * 10**9 for a in annotated), 20)
    out = next(a for a in annotated if stamp_ns(a.header) == 6_001 * 10**9)
    assert out.header == msg.header and (out.height, out.width, out.encoding) == (480, 640,
                                                                                  "bgr8")
    drawn = np.frombuffer(bytes(out.data), np.uint8).reshape(480, 640, 3)
    changed = (drawn != frame).any(axis=2)
    assert 0.001 < changed.mean() < 0.2  # box, landmarks and score drawn; the rest untouched
    assert not any(stamp_ns(a.header) == 6_000 * 10**9 for a in annotated)


@pytest.mark.timeout(120)
def test_frame_skipping_parameter_processes_one_frame_in_n(ros, detector, photos):
    node = f"{NS}/face_detector"
    frame = frames_from(photos, ["obama3.jpg"])[0]
    assert set_params(ros, node, process_every_n=3)[0].successful
    try:
        stamps = [(10_000 + i) * 10**9 for i in range(6)]
        for s in stamps:
            detector["pub"].publish(image_msg(frame, s))
            time.sleep(0.4)  # slower than the detector: only the parameter skips frames
        time.sleep(1.0)
        assert sum(bool(answered(detector["dets"], s)) for s in stamps) == 2
    finally:
        assert set_params(ros, node, process_every_n=1)[0].successful
    publish_and_wait(detector, image_msg(frame, 10_100 * 10**9))


@pytest.mark.timeout(120)
def test_replay_tool_publishes_image_files_with_fresh_stamps(detector, photos, tmp_path):
    files = [photos / "obama.jpg", photos / "biden.jpg"]
    before = time.time_ns()
    replay = start("face_perception_replay", tmp_path, [
        *map(str, files), "--topic", f"{NS}/image", "--frame-id", "replay_files", "--rate", "2",
        "--loop", "2", "--wait-subscribers", "1"])

    def from_replay():
        return [a for a in list(detector["dets"]) if a.header.frame_id == "replay_files"]
    assert until(lambda: len(from_replay()) == 4, 60, detector["proc"]), replay.output()
    until(lambda: not replay.alive(), 30)
    assert replay.stop() == 0, replay.log_path.read_text()
    assert "published 4 frames" in replay.log_path.read_text()
    stamps = [stamp_ns(a.header) for a in from_replay()]
    assert all(s >= before for s in stamps) and stamps == sorted(set(stamps))
    assert [len(a.detections) for a in from_replay()] == [1, 1, 1, 1]
