"""Our hri_msgs build must be wire-compatible with ROS 2 Jazzy's hri_msgs 2.3.2 (ROS4HRI).

Expected hashes: ROS4HRI publishes no RIHS01 values, so they were derived from the upstream
.msg files of the Jazzy release (tag release/jazzy/hri_msgs/2.3.2-1 of the ROS 2 release
repository of hri_msgs, not from our copies) with rosidl's own hashing in the venv
(rosidl_adapter msg -> idl, then rosidl_generator_type_description.generate_type_hash), and
cross-checked with rosbags' independent RIHS01 implementation: both gave these values.
"""
import re
from pathlib import Path

import pytest
import rclpy

REPO = Path(__file__).resolve().parents[1]
UPSTREAM = {
    "FacialLandmarks":
        "RIHS01_f1d6b0ba159f4d6be1632e5dfc9cb79ce5e35da73888da2a4789bd9b35112a63",
    "IdsList":
        "RIHS01_7e0812d1ac945c98fd3e393568d581ad0ab567f37b24eff633eab778c1bfe62d",
    "IdsMatch":
        "RIHS01_1c649d4a87ca2d4fe5f606395e83a863640e411c9192dfda6d399a68019966f0",
    "NormalizedPointOfInterest2D":
        "RIHS01_cc1d2f720c82afeb850ff1dbf66f41ecb7caf19f842987f1247e66160cf03953",
    "NormalizedRegionOfInterest2D":
        "RIHS01_2e50c93f1ca166ee77af9a5424dc951ae4e452b740162a7f83c082d917dcaff5",
}


def test_interface_package_builds_exactly_the_checked_messages():
    msg_dir = REPO / "interfaces/hri_msgs/msg"
    assert sorted(p.stem for p in msg_dir.glob("*.msg")) == sorted(UPSTREAM)
    cmake = (REPO / "interfaces/hri_msgs/CMakeLists.txt").read_text()
    assert sorted(re.findall(r'"msg/(\w+)\.msg"', cmake)) == sorted(UPSTREAM)
    # A ROS workspace uses the distro's hri_msgs.
    assert (REPO / "interfaces/hri_msgs/COLCON_IGNORE").is_file()


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_generated_type_hash_matches_upstream(name):
    import hri_msgs.msg
    msg_type = getattr(hri_msgs.msg, name)
    rclpy.init()
    try:
        node = rclpy.create_node("hri_type_hash_probe")
        node.create_publisher(msg_type, "hri_type_hash_probe", 1)
        (info,) = node.get_publishers_info_by_topic("hri_type_hash_probe")
        assert str(info.topic_type_hash) == UPSTREAM[name]
        node.destroy_node()
    finally:
        rclpy.shutdown()
