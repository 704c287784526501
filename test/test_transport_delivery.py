"""Real DDS between real processes (opt-in, marker ``realtime``: `make test-realtime`): with the
shipped profile in the publishing process, every camera-sized frame published at 30 Hz arrives at
a best-effort (sensor-data) subscriber. Delivery at a real-time rate depends on the machine; the
upstream-loss estimate is tested exactly in test_transport_detector.py and test_frame_accounting.py.
"""
import json
import time

import pytest
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from face_perception.messages.stamps import stamp_to_ns
from face_perception.ros.transport import profile_env
from test.proc import python_proc

SECONDS = 3.0
RATE = 30.0


def receive_from_publisher(tmp_path, repo_root, photos, width, height, skip_every=0):
    """Start a profile-loading publisher process; subscribe here; return (sent, received stamps)."""
    rclpy.init()
    try:
        node = rclpy.create_node("transport_test_subscriber")
        stamps = []
        topic = f"transport_test/image_{width}x{height}_{skip_every}"

        def on_image(msg):
            assert (msg.width, msg.height, msg.encoding) == (width, height, "bgr8")
            assert len(msg.data) == width * height * 3
            stamps.append(stamp_to_ns(msg.header.stamp))

        node.create_subscription(Image, topic, on_image, qos_profile_sensor_data)
        pub = python_proc(
            [str(repo_root / "test/frame_publisher.py"), "--topic", topic,
             "--width", str(width), "--height", str(height), "--rate", str(RATE),
             "--seconds", str(SECONDS), "--skip-every", str(skip_every),
             "--photo", str(photos / "obama.jpg")],
            tmp_path / f"publisher_{width}.log", env=profile_env("default"))
        deadline = time.monotonic() + 60
        while pub.alive() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        for _ in range(10):  # anything still in flight
            rclpy.spin_once(node, timeout_sec=0.05)
        code = pub.stop()
        out = pub.log_path.read_text(errors="replace")
        sent_lines = [ln for ln in out.splitlines() if ln.startswith("SENT ")]
        assert code == 0 and sent_lines, out
        node.destroy_node()
        return json.loads(sent_lines[-1][5:]), stamps
    finally:
        rclpy.shutdown()


@pytest.mark.realtime
@pytest.mark.parametrize("width,height", [(640, 480), (1280, 720)])
def test_profile_in_publisher_delivers_every_frame_to_best_effort_subscriber(
        tmp_path, repo_root, photos, width, height):
    sent, received = receive_from_publisher(tmp_path, repo_root, photos, width, height)
    assert len(sent["stamps"]) == int(SECONDS * RATE)
    got = set(received) & set(sent["stamps"])
    assert len(got) >= 0.99 * len(sent["stamps"]), (
        f"{len(got)} of {len(sent['stamps'])} {width}x{height} frames arrived")
