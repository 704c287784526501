"""The one builder behind launch/*.launch.py: declared arguments + the nodes of launch_plan.plan.

Imports ``launch``/``launch_ros`` only when called (they come with a ROS 2 distribution), so a
launch file that uses it can be loaded and checked on machines without them.
"""
from __future__ import annotations

from typing import Sequence

from face_perception.ros.launch_plan import ARGUMENTS, PACKAGE, plan


def generate(nodes: Sequence[str], used: Sequence[str]):
    """LaunchDescription declaring the launch arguments ``used`` and starting ``nodes``."""
    from launch.actions import DeclareLaunchArgument, OpaqueFunction
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    from launch import LaunchDescription

    def start(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name in used}
        return [Node(package=PACKAGE, executable=p.executable, name=p.name,
                     namespace=p.namespace, parameters=p.parameters, remappings=p.remappings,
                     additional_env=p.env, output="screen", emulate_tty=True)
                for p in plan(values, tuple(nodes))]

    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=ARGUMENTS[name][0],
                               description=ARGUMENTS[name][1]) for name in used]
        + [OpaqueFunction(function=start)])
