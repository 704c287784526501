"""Face detection + recognition next to a camera driver.

    ros2 launch face_perception face_perception.launch.py image_topic:=/camera/image_raw \
        gallery_path:=$HOME/people.json

Starts face_detector and face_recognizer (or both in face_perception_container with
use_container:=true) with the shipped config/*.yaml, the launch arguments below, and the Fast DDS
large-frame profile in every started process (dds_profile:=off to disable).
"""
from face_perception.ros.launch_builder import generate
from face_perception.ros.launch_plan import ARGUMENTS

NODES = ("face_detector", "face_recognizer")
USED = tuple(ARGUMENTS)


def generate_launch_description():
    return generate(NODES, USED)
