"""face_recognizer alone: identities for faces/detections from any detector in its namespace.

    ros2 launch face_perception face_recognizer.launch.py image_topic:=/camera/image_raw \
        gallery_path:=$HOME/people.json

Starts face_recognizer with the shipped config/face_recognizer.yaml, the launch arguments
below, and the Fast DDS large-frame profile (dds_profile:=off to disable).
"""
from face_perception.ros.launch_builder import generate

NODES = ("face_recognizer",)
USED = ("image_topic", "namespace", "params_file", "device", "backend", "compressed",
        "gallery_path", "dds_profile")


def generate_launch_description():
    return generate(NODES, USED)
