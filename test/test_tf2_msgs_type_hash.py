"""Our tf2_msgs build must be wire-compatible with ROS 2 Jazzy's tf2_msgs (ros2/geometry2).

Expected hash: derived from upstream's TFMessage.msg (branch jazzy of ros2/geometry2, not from
our copy) with rosidl's own hashing in the venv (rosidl_adapter msg -> idl, then
rosidl_generator_type_description.generate_type_hash against the wheels' geometry_msgs), and
cross-checked with rosbags' independent RIHS01 implementation over its built-in Jazzy
definition (``get_typestore(Stores.ROS2_JAZZY).hash_rihs01('tf2_msgs/msg/TFMessage')``): both
gave this value.
"""
import re
from pathlib import Path

import rclpy

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = "RIHS01_e369d0f05a23ae52508854b66f6aa0437f3449d652e8cbf22d5abe85d020f087"


def test_interface_package_builds_only_tfmessage_and_steps_aside_in_a_workspace():
    pkg = REPO / "interfaces/tf2_msgs"
    assert [p.name for p in (pkg / "msg").glob("*.msg")] == ["TFMessage.msg"]
    assert (pkg / "msg/TFMessage.msg").read_text() == \
        "geometry_msgs/TransformStamped[] transforms\n"
    assert re.findall(r'"msg/(\w+)\.msg"', (pkg / "CMakeLists.txt").read_text()) == \
        ["TFMessage"]
    assert (pkg / "COLCON_IGNORE").is_file()  # a ROS workspace uses the distro's tf2_msgs
    assert "BSD" in (pkg / "LICENSE").read_text() and "Willow Garage" in \
        (pkg / "package.xml").read_text()


def test_generated_type_hash_matches_upstream():
    from tf2_msgs.msg import TFMessage

    rclpy.init()
    try:
        node = rclpy.create_node("tf2_type_hash_probe")
        node.create_publisher(TFMessage, "tf2_type_hash_probe", 1)
        (info,) = node.get_publishers_info_by_topic("tf2_type_hash_probe")
        assert str(info.topic_type_hash) == UPSTREAM
        node.destroy_node()
    finally:
        rclpy.shutdown()
