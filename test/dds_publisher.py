"""Child process for test_dds_roundtrip: publishes known Image and Detection2DArray messages."""
import sys
import time

import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose


def frame(i: int) -> np.ndarray:
    img = np.zeros((480, 640, 3), np.uint8)
    img[:, :, 0] = (np.arange(640) % 256)[None, :]
    img[:, :, 1] = (np.arange(480) % 256)[:, None]
    img[:, :, 2] = i
    return img


def main() -> None:
    count = int(sys.argv[1])
    rclpy.init()
    node = rclpy.create_node("roundtrip_publisher")
    qos = QoSProfile(depth=count, reliability=ReliabilityPolicy.RELIABLE)
    img_pub = node.create_publisher(Image, "roundtrip/image", qos)
    det_pub = node.create_publisher(Detection2DArray, "roundtrip/detections", qos)
    deadline = time.monotonic() + 30
    while (img_pub.get_subscription_count() == 0 or det_pub.get_subscription_count() == 0) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(count):
        msg = Image(height=480, width=640, encoding="bgr8", step=640 * 3)
        msg.header.frame_id = "camera"
        msg.header.stamp.sec = 100 + i
        msg.data = frame(i).tobytes()
        img_pub.publish(msg)
        arr = Detection2DArray(header=msg.header)
        det = Detection2D(header=msg.header, id=f"face-{i}")
        det.bbox.center.position.x = 320.0 + i
        det.bbox.center.position.y = 240.0
        det.bbox.size_x, det.bbox.size_y = 80.0, 100.0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = "face"
        hyp.hypothesis.score = 0.5 + i / 100
        det.results.append(hyp)
        arr.detections.append(det)
        det_pub.publish(arr)
    # Reliable, history as deep as the messages: stay until the subscriber acknowledged them all.
    for pub in (img_pub, det_pub):
        if not pub.wait_for_all_acked(Duration(seconds=60)):
            print(f"not every message on {pub.topic_name} was acknowledged", flush=True)
            sys.exit(1)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
