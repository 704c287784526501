"""Real DDS between two processes: images and vision_msgs detections arrive intact."""
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from test.dds_publisher import frame
from test.proc import python_proc

COUNT = 5


def test_image_and_detections_cross_process_boundary(tmp_path, repo_root):
    rclpy.init()
    try:
        node = rclpy.create_node("roundtrip_subscriber")
        qos = QoSProfile(depth=COUNT, reliability=ReliabilityPolicy.RELIABLE)
        images, detections = [], []
        node.create_subscription(Image, "roundtrip/image", images.append, qos)
        node.create_subscription(Detection2DArray, "roundtrip/detections", detections.append, qos)
        pub = python_proc([str(repo_root / "test/dds_publisher.py"), str(COUNT)],
                          tmp_path / "publisher.log")
        deadline = time.monotonic() + 40
        while (len(images) < COUNT or len(detections) < COUNT) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        pub.stop()
        assert len(images) == COUNT, pub.output()
        assert len(detections) == COUNT, pub.output()
        for i, msg in enumerate(images):
            assert (msg.height, msg.width, msg.encoding, msg.step) == (480, 640, "bgr8", 1920)
            assert msg.header.stamp.sec == 100 + i and msg.header.frame_id == "camera"
            got = np.frombuffer(bytes(msg.data), np.uint8).reshape(480, 640, 3)
            np.testing.assert_array_equal(got, frame(i))
        for i, arr in enumerate(detections):
            assert arr.header.stamp.sec == 100 + i
            (det,) = arr.detections
            assert det.id == f"face-{i}"
            assert det.bbox.center.position.x == pytest.approx(320.0 + i)
            assert (det.bbox.size_x, det.bbox.size_y) == (80.0, 100.0)
            assert det.results[0].hypothesis.class_id == "face"
            assert det.results[0].hypothesis.score == pytest.approx(0.5 + i / 100)
        node.destroy_node()
    finally:
        rclpy.shutdown()
    assert sys.modules["vision_msgs.msg"]  # the generated package is the one in use
