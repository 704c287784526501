"""Lifecycle requests from an external client and parameter validation, on real node processes.

What a lifecycle manager (nav2_lifecycle_manager and the like) does: ``~/change_state`` by
transition id or by label, ``~/get_state``, ``~/get_available_transitions``. Every request is
answered; a transition the current state does not offer gets success=false and changes nothing;
the process never dies on one (issue 22 item 2: configure by id on an autostarted node raised
RCLError and ended it). Invalid parameters keep the node up and unconfigured with the reason
(item 7). Real DDS, lock step, exact assertions; waits are for events (a state, a log line, a
message), never for time.
"""
import re
import threading

import cv2
import onnxruntime
import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetAvailableTransitions, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import Detection2DArray

from test.ros_harness import (
    frames_from,
    get_params,
    image_msg,
    lock_step,
    node_args,
    set_params,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    write_params,
)

T = Transition
SECOND = 10**9


class Client:
    """The calls a lifecycle manager makes, on one node."""

    def __init__(self, ros, node: str, proc):
        self.ros, self.node, self.proc = ros, node, proc

    def state(self) -> str:
        return self.ros.call(GetState, f"{self.node}/get_state", GetState.Request(),
                             timeout=120).current_state.label

    def available(self) -> set:
        res = self.ros.call(GetAvailableTransitions, f"{self.node}/get_available_transitions",
                            GetAvailableTransitions.Request())
        return {(d.transition.label, d.transition.id) for d in res.available_transitions}

    def change(self, by) -> bool:
        """ChangeState by id (an int) or by label (a str)."""
        transition = T(id=by) if isinstance(by, int) else T(label=by)
        return self.ros.call(ChangeState, f"{self.node}/change_state",
                             ChangeState.Request(transition=transition)).success

    def expect(self, steps, where: str) -> None:
        """Each (request, answer, state after): answered as given, the process alive."""
        for by, success, after in steps:
            assert self.change(by) is success, (where, by, self.proc.output()[-3000:])
            assert self.state() == after, (where, by)
            assert self.proc.alive(), self.proc.output()

    def wait_state(self, label: str) -> None:
        assert until(lambda: self.state() == label, 120, self.proc), self.proc.output()


# Nothing but configure and shutdown is offered while unconfigured: ids, labels, unknown ids,
# rcl's internal transitions (10 = on_configure_success) and an empty request are refused.
FROM_UNCONFIGURED = [(T.TRANSITION_ACTIVATE, False, "unconfigured"),
                     (T.TRANSITION_DEACTIVATE, False, "unconfigured"),
                     ("cleanup", False, "unconfigured"),
                     (T.TRANSITION_INACTIVE_SHUTDOWN, False, "unconfigured"),
                     (T.TRANSITION_ON_CONFIGURE_SUCCESS, False, "unconfigured"),
                     (T.TRANSITION_CREATE, False, "unconfigured"),
                     (T.TRANSITION_CONFIGURE, True, "inactive"),
                     (T.TRANSITION_CONFIGURE, False, "inactive"),
                     ("activate", True, "active")]
# What nav2's manager sends to a node that autostarted, and other invalid requests.
WHILE_ACTIVE = [(T.TRANSITION_CONFIGURE, False, "active"),
                ("configure", False, "active"),
                (T.TRANSITION_CLEANUP, False, "active"),
                (T.TRANSITION_ACTIVATE, False, "active"),
                (99, False, "active"),
                ("bogus", False, "active"),
                (T.TRANSITION_UNCONFIGURED_SHUTDOWN, False, "active")]
ROUND_TRIP = [(T.TRANSITION_DEACTIVATE, True, "inactive"),
              ("deactivate", False, "inactive"),
              (T.TRANSITION_CLEANUP, True, "unconfigured"),
              ("activate", False, "unconfigured"),
              (T.TRANSITION_CONFIGURE, True, "inactive"),
              ("activate", True, "active")]
TO_FINALIZED = [("shutdown", True, "finalized"),
                (T.TRANSITION_CONFIGURE, False, "finalized"),
                ("configure", False, "finalized"),
                (T.TRANSITION_DESTROY, False, "finalized")]


@pytest.mark.parametrize("autostart", [True, False], ids=["autostart", "managed"])
@pytest.mark.parametrize("name", ["face_detector", "face_recognizer"])
def test_every_lifecycle_request_is_answered_and_the_node_keeps_working(
        ros, photos, tmp_path, name, autostart):
    ns = unique_ns(f"/lc_{name}_{autostart}")
    params = write_params(tmp_path / "params.yaml", name, {
        "autostart": autostart, "qos_reliability": "reliable"})
    proc = start(name, tmp_path, node_args(ns, params))
    node = Client(ros, f"{ns}/{name}", proc)
    try:
        if autostart:
            node.wait_state("active")
        else:
            assert node.state() == "unconfigured"
            assert node.available() == {("configure", T.TRANSITION_CONFIGURE),
                                        ("shutdown", T.TRANSITION_UNCONFIGURED_SHUTDOWN)}
            node.expect(FROM_UNCONFIGURED, "unconfigured")
        assert node.available() == {("deactivate", T.TRANSITION_DEACTIVATE),
                                    ("shutdown", T.TRANSITION_ACTIVE_SHUTDOWN)}
        node.expect(WHILE_ACTIVE, "active")
        node.expect(ROUND_TRIP, "round trip")
        assert ros.stats(node.node)["state"] == "active"
        if name == "face_detector":  # still detects after all that
            pub = ros.publisher(Image, f"{ns}/image")
            dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
            assert wait_for_subscribers(pub, 1, 60) and ros.wait_matched(f"{ns}/faces/detections")
            assert ros.wait_connected(node.node), proc.output()
            msg = image_msg(frames_from(photos, ["obama.jpg"])[0], 5_000 * SECOND)
            assert len(lock_step(pub, dets, msg, proc).detections) == 1
        node.expect(TO_FINALIZED, "finalized")
        assert node.available() == set()
        out = proc.output()
        assert "lifecycle transition 'configure' refused: not available while active" in out
        assert "Traceback" not in out, out
        assert proc.alive()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def set_list(ros, node: str, name: str, value: list):
    req = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
    (result,) = ros.call(SetParameters, f"{node}/set_parameters", req).results
    return result


def test_invalid_parameters_keep_the_detector_unconfigured_until_set_right(ros, photos,
                                                                           tmp_path):
    ns = unique_ns("/lc_bad_params")
    params = write_params(tmp_path / "params.yaml", "face_detector", {
        "score_threshold": 1, "scales": [], "backend": "tensorrt",
        "qos_reliability": "reliable"})
    proc = start("face_detector", tmp_path, node_args(ns, params))
    node = Client(ros, f"{ns}/face_detector", proc)
    try:
        # autostart tried to configure and was refused with the reasons; the process serves on
        assert until(lambda: "configure refused" in proc.output(), 120, proc), proc.output()
        assert node.state() == "unconfigured" and proc.alive()
        problems = ros.stats(node.node)["parameter_problems"]
        assert "scales needs at least 1 item(s), got []" in problems
        assert "backend must be one of ['onnx', 'onnx-int8', 'torch'], got 'tensorrt'" in problems
        assert "score_threshold" not in problems
        # an integer for a double, in a params file and at run time, is that double
        assert get_params(ros, node.node, ["score_threshold"]) == {"score_threshold": 1.0}
        assert set_params(ros, node.node, score_threshold=1)[0].successful
        assert not node.change(T.TRANSITION_CONFIGURE)
        assert not set_list(ros, node.node, "scales", []).successful  # still refused
        assert set_list(ros, node.node, "scales", [1, 2]).successful  # integers -> doubles
        assert get_params(ros, node.node, ["scales"]) == {"scales": [1.0, 2.0]}
        assert not node.change("configure")  # backend is still wrong
        assert set_params(ros, node.node, backend="onnx-int8")[0].successful
        assert set_params(ros, node.node, backend="onnx", score_threshold=0.5)[0].successful
        assert ros.stats(node.node)["parameter_problems"] == ""
        node.expect([(T.TRANSITION_CONFIGURE, True, "inactive"), ("activate", True, "active")],
                    "fixed")
        assert not set_list(ros, node.node, "scales", []).successful
        pub = ros.publisher(Image, f"{ns}/image")
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        assert wait_for_subscribers(pub, 1, 60) and ros.wait_matched(f"{ns}/faces/detections")
        assert ros.wait_connected(node.node), proc.output()
        msg = image_msg(frames_from(photos, ["biden.jpg"])[0], 6_000 * SECOND)
        assert len(lock_step(pub, dets, msg, proc).detections) == 1
        assert "Traceback" not in proc.output()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_recognizer_refuses_a_missing_gallery_empty_label_and_negative_margin(ros, tmp_path):
    ns = unique_ns("/lc_rec_params")
    missing = tmp_path / "nobody" / "people.json"
    params = write_params(tmp_path / "params.yaml", "face_recognizer", {
        "autostart": False, "gallery_path": str(missing), "unknown_label": "",
        "margin": -0.5, "device": "cuda"})
    proc = start("face_recognizer", tmp_path, node_args(ns, params))
    node = Client(ros, f"{ns}/face_recognizer", proc)
    try:
        assert node.state() == "unconfigured"
        assert not node.change(T.TRANSITION_CONFIGURE)
        assert node.state() == "unconfigured" and proc.alive()
        problems = ros.stats(node.node)["parameter_problems"]
        assert "unknown_label must not be empty or blank, got ''" in problems
        assert "margin must be -1.0 or in [0.0, 1.0], got -0.5" in problems
        assert f"gallery_path '{missing}': no gallery file" in problems
        # the same values at run time are rejected with the same reasons
        for key, value, reason in (("unknown_label", " ", "must not be empty"),
                                   ("margin", -0.5, "-1.0 or in [0.0, 1.0]"),
                                   ("gallery_path", "/nonexistent", "no gallery file")):
            (result,) = set_params(ros, node.node, **{key: value})
            assert not result.successful and reason in result.reason, (key, result.reason)
        assert set_params(ros, node.node, unknown_label="stranger", margin=-1.0)[0].successful
        assert not node.change("configure")  # the gallery is still missing
        assert set_params(ros, node.node, create_gallery=True)[0].successful
        node.expect([("configure", True, "inactive")], "new gallery")
        # device cuda: the device in use is reported; without CUDA (this machine) the
        # fallback is logged through the node's logger
        stats = ros.stats(node.node)
        out = proc.output()
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            assert (stats["device"], stats["device_requested"]) == ("cuda", "cuda"), stats
        else:
            assert (stats["device"], stats["device_requested"]) == ("cpu", "cuda"), stats
            assert re.search(r"\[WARN\] \[[\d.]+\] \[[\w.]*face_recognizer\]: .*CUDA", out)
            assert re.search(r"\[WARN\] \[[\d.]+\] \[[\w.]*face_recognizer\]: device "
                             r"'cuda' requested, running on cpu", out), out
        assert "Traceback" not in out
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_compressed_input_follows_the_image_remap(ros, photos, tmp_path):
    ns = unique_ns("/lc_compressed")
    camera = f"/{ns.strip('/')}_cam/image_raw"
    params = write_params(tmp_path / "params.yaml", "face_detector", {
        "image_transport": "compressed", "qos_reliability": "reliable"})
    # only `image` is remapped, as for image_transport: <remapped image>/compressed is read
    proc = start("face_detector", tmp_path, node_args(ns, params, ["-r", f"image:={camera}"]))
    try:
        pub = ros.publisher(CompressedImage, f"{camera}/compressed")
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        assert wait_for_subscribers(pub, 1, timeout=120), proc.output()
        assert ros.wait_matched(f"{ns}/faces/detections"), proc.output()
        assert ros.wait_connected(f"{ns}/face_detector"), proc.output()
        assert ros.stats(f"{ns}/face_detector")["inputs"] == [f"{camera}/compressed"]
        msg = CompressedImage(format="jpeg")
        msg.header.stamp.sec = 9_000
        msg.data = cv2.imencode(".jpg", frames_from(photos, ["obama2.jpg"])[0])[1].tobytes()
        assert len(lock_step(pub, dets, msg, proc).detections) == 1
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_pauses_and_inactive_spells_are_not_counted_as_lost_frames(ros, photos, tmp_path):
    ns = unique_ns("/lc_pause")
    params = write_params(tmp_path / "params.yaml", "face_detector", {
        "qos_reliability": "reliable", "tracking": False})
    proc = start("face_detector", tmp_path, node_args(ns, params))
    node = Client(ros, f"{ns}/face_detector", proc)
    try:
        pub = ros.publisher(Image, f"{ns}/image")
        dets = ros.listen(Detection2DArray, f"{ns}/faces/detections")
        assert wait_for_subscribers(pub, 1, 120) and ros.wait_matched(f"{ns}/faces/detections")
        assert ros.wait_connected(node.node), proc.output()
        frame = frames_from(photos, ["obama3.jpg"])[0]
        t0, period = 20_000 * SECOND, SECOND // 5  # a 5 Hz stream, by its stamps

        def send(indices, offset=0):
            for i in indices:
                lock_step(pub, dets, image_msg(frame, t0 + offset + i * period), proc)

        send(range(10))
        # 5 s without frames: a pause (the 50-interval rule counted 25 frames lost here)
        send(range(10, 12), offset=5 * SECOND)
        send(range(13, 15), offset=5 * SECOND)  # one frame (12) lost
        node.expect([("deactivate", True, "inactive"), ("activate", True, "active")], "spell")
        assert wait_for_subscribers(pub, 1, 60)
        send(range(17, 20), offset=5 * SECOND)  # 2 frames while inactive: not ours to count
        stats = ros.stats(node.node)
        assert (stats["received"], stats["processed"]) == (17, 17)
        assert (stats["missing_upstream"], stats["pauses"]) == (1, 2), stats
        assert "never arrived" not in proc.output()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_a_callback_exception_is_logged_and_the_executor_spins_on():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from face_perception.ros.runner import spin_until_shutdown

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("raising_node", context=context)
    calls, second = [], threading.Event()

    def tick():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bad request")
        second.set()

    node.create_timer(0.01, tick)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    survived = []
    thread = threading.Thread(target=lambda: survived.append(
        spin_until_shutdown(executor, node.get_logger())))
    thread.start()
    try:
        assert second.wait(60)
    finally:
        rclpy.shutdown(context=context)
        thread.join(60)
        node.destroy_node()
    assert not thread.is_alive() and survived == [1]
