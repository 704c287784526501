"""Launch plan: hri:=true adds the REP-155 bridge next to the nodes, fed by the last one."""
from pathlib import Path

import pytest

from face_perception.ros.launch_plan import ARGUMENTS, plan
from face_perception.ros.processes import entry_point
from test.test_launch_files import console_scripts, load_launch_file

REPO = Path(__file__).resolve().parents[1]


def test_hri_is_off_by_default_and_a_documented_argument_of_the_main_launch_file():
    assert ARGUMENTS["hri"][0] == "false" and "REP-155" in ARGUMENTS["hri"][1]
    assert "face_hri_bridge" not in {p.executable for p in plan({})}
    module = load_launch_file(REPO / "launch/face_perception.launch.py")
    assert "hri" in module.USED


def test_hri_true_starts_the_installed_bridge_on_the_recognizers_identities():
    det, rec, bridge = plan({"hri": "true", "image_topic": "/cam/image_raw",
                             "namespace": "robot1", "params_file": "/etc/robot/faces.yaml"})
    assert (det.executable, rec.executable) == ("face_detector", "face_recognizer")
    assert (bridge.executable, bridge.name, bridge.namespace) == (
        "face_hri_bridge", "face_hri_bridge", "robot1")
    # Reads faces/identities; camera_info (publish_tf) beside the camera's image topic.
    assert bridge.remappings == [("image", "/cam/image_raw"), ("camera_info", "/cam/camera_info")]
    assert bridge.parameters == ["/etc/robot/faces.yaml"]
    assert bridge.env == det.env  # same DDS profile as the nodes
    assert console_scripts()["face_hri_bridge"] == "face_perception.ros.hri_bridge:main"
    assert entry_point("face_hri_bridge").is_file()


def test_hri_bridge_reads_the_detectors_faces_without_recognizer_and_sits_beside_container():
    det, bridge = plan({"hri": "true", "use_recognizer": "false"})
    assert det.executable == "face_detector"
    assert ("faces/identities", "faces/detections") in bridge.remappings
    container, bridge = plan({"hri": "true", "use_container": "true"})
    assert container.executable == "face_perception_container"
    assert bridge.executable == "face_hri_bridge" and len(bridge.remappings) == 2
    (only,) = plan({"hri": "false"})[-1:]
    assert only.executable == "face_recognizer"
    with pytest.raises(ValueError, match="hri must be true or false"):
        plan({"hri": "maybe"})
