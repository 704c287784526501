"""face_hri_bridge parameters over real DDS: every one is checked (a reason for a refusal, the
old value kept) and applied at run time, the image QoS the same way as the nodes' (shorthands,
``qos_overrides`` winning), as the ROS graph shows it."""
from __future__ import annotations

from hri_msgs.msg import IdsList
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from face_perception.ros.hri_bridge import PARAMS
from test.hri_frames import photo_face, send_frame
from test.ros_harness import (
    LATCHED,
    answered,
    get_params,
    node_args,
    set_params,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    wait_stat,
)
from test.test_ros_qos import offered

BEST_EFFORT = QoSProfile(depth=5, reliability=ReliabilityPolicy.BEST_EFFORT)


def test_every_bridge_parameter_has_a_description_and_a_range_or_choices():
    for spec in PARAMS:
        assert spec.description and spec.runtime, spec.name
        if spec.kind in (int, float):
            assert spec.low is not None and spec.high is not None, spec.name
    assert {s.name for s in PARAMS} == {
        "face_width", "face_height", "unknown_label", "qos_reliability", "qos_depth",
        "pair_buffer_size", "face_timeout", "publish_tf"}


def test_bridge_parameters_are_refused_with_a_reason_or_applied_at_run_time(
        ros, photos, core_detector, tmp_path):
    image, box, landmarks = photo_face(photos, core_detector)
    ns = unique_ns("/hri_params")
    node, topic = f"{ns}/face_hri_bridge", f"{ns}/image"
    tracked = ros.listen(IdsList, "/humans/faces/tracked")
    params = tmp_path / "params.yaml"
    params.write_text(f"""/**/face_hri_bridge:
  ros__parameters:
    qos_reliability: reliable
    face_timeout: 3600.0
    qos_overrides:
      {topic}:
        subscription:
          depth: 7
""")
    bridge = start("face_hri_bridge", tmp_path, node_args(ns, params))
    try:
        assert until(lambda: len(offered(ros, topic)) == 1, 90, bridge), bridge.output()
        assert offered(ros, topic)[0].reliability == ReliabilityPolicy.RELIABLE
        assert ros.stats(node)["image_qos"] == "reliable/7/keep_last/volatile"

        refused = {"face_timeout": -1.0, "face_width": 8, "qos_depth": 0,
                   "qos_reliability": "sometimes", "pair_buffer_size": 0}
        for name, value in refused.items():
            (result,) = set_params(ros, node, **{name: value})
            assert not result.successful and name in result.reason, (name, result.reason)
        (result,) = set_params(ros, node, publish_tf="yes")  # a string for a bool
        assert not result.successful
        assert get_params(ros, node, [*refused, "publish_tf"]) == {
            "face_timeout": 3600.0, "face_width": 128, "qos_depth": 5,
            "qos_reliability": "reliable", "pair_buffer_size": 10, "publish_tf": False}

        # Best effort (a camera driver's QoS): the subscription is re-created; the depth
        # override from the command line keeps winning over the qos_depth shorthand.
        results = set_params(ros, node, qos_reliability="best_effort", qos_depth=2,
                             face_width=64, face_height=48, face_timeout=600.0,
                             pair_buffer_size=3)
        assert all(r.successful for r in results), [r.reason for r in results]
        wait_stat(ros, node, "image_qos", "best_effort/7/keep_last/volatile", bridge)
        assert until(lambda: [q.reliability for q in offered(ros, topic)]
                     == [ReliabilityPolicy.BEST_EFFORT], 30, bridge)
        assert ros.stats(node)["values"] == {
            "face_width": 64, "face_height": 48, "unknown_label": "unknown",
            "qos_reliability": "best_effort", "qos_depth": 2, "pair_buffer_size": 3,
            "face_timeout": 600.0, "publish_tf": False}

        # A best-effort camera's publisher now matches (it never matches a reliable reader).
        # No frames over it: a best-effort writer may send before the reader has matched it,
        # so lock step needs reliable QoS.
        camera_pub = ros.publisher(Image, topic, BEST_EFFORT)
        assert wait_for_subscribers(camera_pub)

        # Back to reliable (bag replay); the frames go in reliable lock step.
        assert set_params(ros, node, qos_reliability="reliable")[0].successful
        wait_stat(ros, node, "image_qos", "reliable/7/keep_last/volatile", bridge)
        assert until(lambda: [q.reliability for q in offered(ros, topic)]
                     == [ReliabilityPolicy.RELIABLE], 30, bridge)
        image_pub = ros.publisher(Image, topic)
        faces_pub = ros.publisher(Detection2DArray, f"{ns}/faces/identities")
        assert wait_for_subscribers(image_pub) and wait_for_subscribers(faces_pub)
        # The crops have the new size.
        stamp = send_frame(image_pub, faces_pub, image, box, landmarks, 11, "camera",
                           [("2", "unknown", 0.0)])
        assert until(lambda: answered(tracked, stamp), 60, bridge), bridge.output()
        (fid,) = answered(tracked, stamp)[0].ids
        crops = ros.listen(Image, f"/humans/faces/{fid}/cropped", LATCHED)
        assert until(lambda: crops, 60, bridge)
        assert (crops[0].width, crops[0].height) == (64, 48)

        # Bad input costs its frame only: one track id twice in a frame is refused, counted.
        send_frame(image_pub, faces_pub, image, box, landmarks, 12, "camera",
                   [("9", "unknown", 0.0), ("9", "unknown", 0.0)])
        wait_stat(ros, node, "bad_frames", 1, bridge)
        stamp = send_frame(image_pub, faces_pub, image, box, landmarks, 13, "camera",
                           [("2", "unknown", 0.0)])
        assert until(lambda: answered(tracked, stamp), 60, bridge), bridge.output()
        assert list(answered(tracked, stamp)[0].ids) == [fid]
        stats = ros.stats(node)
        assert (stats["frames"], stats["failed_frames"]) == (2, 0)
        assert bridge.alive(), bridge.output()
    finally:
        assert bridge.stop() in (0, -2), bridge.output()
