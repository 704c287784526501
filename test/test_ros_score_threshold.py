"""The detector node's score_threshold: -1 (the default) is the backbone's own threshold, so
``backbone: yunet`` alone runs YuNet at its equal-recall 0.87, not RetinaFace's 0.5; a value set
at run time replaces it and -1 brings it back. The open-set ``threshold`` refuses negative
cosines other than the -1 sentinel (a negative threshold would name strangers)."""
from __future__ import annotations

import time

import pytest

from test.proc import hang_guard

pytest.importorskip("rclpy", reason="ROS 2 not installed")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402


def _active(node, context):
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    deadline = time.monotonic() + hang_guard(60)
    while node.state != "active":
        assert time.monotonic() < deadline, "the node did not activate"
        executor.spin_once(timeout_sec=0.1)
    return executor


def _set(node, **values) -> bool:
    (result,) = node.set_parameters([Parameter(k, value=v) for k, v in values.items()])
    return result.successful


@pytest.mark.parametrize("backbone,own", [("mnet", 0.5), ("yunet", 0.87)])
def test_detector_node_default_score_threshold_is_the_backbones_own(ros_context, backbone, own):
    from face_perception.ros.detector_node import DetectorNode

    node = DetectorNode(context=ros_context,
                        parameter_overrides=[Parameter("backbone", value=backbone)])
    executor = _active(node, ros_context)
    try:
        assert node.values["score_threshold"] == -1.0
        assert node.model.score_threshold == own
        assert f"score>={own}" in node.describe_model()
        assert _set(node, score_threshold=0.6)
        assert node.model.score_threshold == 0.6
        assert _set(node, score_threshold=-1.0)
        assert node.model.score_threshold == own
        assert not _set(node, score_threshold=-0.5)
        assert not _set(node, score_threshold=1.5)
    finally:
        executor.shutdown()
        node.destroy_node()


def test_recognizer_threshold_refuses_negative_cosines_but_the_sentinel():
    from face_perception.ros.params import RECOGNIZER

    spec = {s.name: s for s in RECOGNIZER}["threshold"]
    assert spec.check(-1.0) is None and spec.check(0.6) is None and spec.check(0.0) is None
    assert spec.check(-0.3) == "threshold must be -1.0 or in [0.0, 1.0], got -0.3"
