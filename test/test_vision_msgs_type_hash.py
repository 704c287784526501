"""Our vision_msgs build must be wire-compatible with a real ROS 2 vision_msgs 4.x."""

import rclpy

UPSTREAM_DETECTION2DARRAY = \
    "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968"


def test_detection2darray_type_hash_matches_upstream():
    from vision_msgs.msg import Detection2DArray
    rclpy.init()
    try:
        node = rclpy.create_node("type_hash_probe")
        node.create_publisher(Detection2DArray, "type_hash_probe", 1)
        (info,) = node.get_publishers_info_by_topic("type_hash_probe")
        assert str(info.topic_type_hash) == UPSTREAM_DETECTION2DARRAY
        node.destroy_node()
    finally:
        rclpy.shutdown()
