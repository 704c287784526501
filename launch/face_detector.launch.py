"""face_detector alone: faces/detections for a camera image topic.

    ros2 launch face_perception face_detector.launch.py image_topic:=/camera/image_raw

Starts face_detector with the shipped config/face_detector.yaml, the launch arguments below,
and the Fast DDS large-frame profile (dds_profile:=off to disable).
"""
from face_perception.ros.launch_builder import generate

NODES = ("face_detector",)
USED = ("image_topic", "namespace", "params_file", "device", "backend", "compressed",
        "dds_profile")


def generate_launch_description():
    return generate(NODES, USED)
