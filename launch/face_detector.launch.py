"""face_detector alone: faces/detections for a camera image topic.

    ros2 launch face_perception face_detector.launch.py image_topic:=/camera/image_raw

Starts face_detector with the shipped config/face_detector.yaml, the launch arguments below,
and the Fast DDS large-frame profile (dds_profile:=off to disable).
"""
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from face_perception.ros.launch_plan import ARGUMENTS, PACKAGE, plan
from launch import LaunchDescription

NODES = ("face_detector",)
USED = ("image_topic", "namespace", "params_file", "device", "backend", "compressed",
        "dds_profile")


def _start(context, *args, **kwargs):
    values = {name: LaunchConfiguration(name).perform(context) for name in USED}
    return [Node(package=PACKAGE, executable=p.executable, name=p.name, namespace=p.namespace,
                 parameters=p.parameters, remappings=p.remappings, additional_env=p.env,
                 output="screen", emulate_tty=True)
            for p in plan(values, NODES)]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=ARGUMENTS[name][0],
                               description=ARGUMENTS[name][1]) for name in USED]
        + [OpaqueFunction(function=_start)])
