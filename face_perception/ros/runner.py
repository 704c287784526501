"""Entry-point glue: apply the DDS profile, init rclpy, spin nodes, shut down on SIGINT."""
from __future__ import annotations

import os
import sys
from typing import Callable, Optional, Sequence

from face_perception.ros.transport import TransportProfileError, apply_profile

# "default" (the shipped large-frame profile), "off", or a profile path. A profile already named
# by FASTRTPS_/FASTDDS_DEFAULT_PROFILES_FILE (e.g. set by our launch files) always wins.
PROFILE_ENV = "FACE_PERCEPTION_DDS_PROFILE"


def run_nodes(factories: Sequence[Callable[[], object]], args: Optional[list[str]] = None,
              multithreaded: bool = False, prog: str = "face_perception") -> int:
    """Create the nodes (after rclpy.init), spin them until SIGINT, release them; exit code."""
    try:
        # Nodes publish annotated images (large): the profile must be loaded before rclpy.init.
        apply_profile(os.environ.get(PROFILE_ENV, "default"))
    except TransportProfileError as exc:
        print(f"{prog}: warning: {exc}; continuing with Fast DDS defaults", file=sys.stderr)
    import rclpy
    from rclpy.executors import (
        ExternalShutdownException,
        MultiThreadedExecutor,
        SingleThreadedExecutor,
    )

    rclpy.init(args=args)
    nodes = []
    try:
        try:
            nodes = [factory() for factory in factories]
        except ValueError as exc:  # invalid parameters from a params file or the command line
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        executor = MultiThreadedExecutor() if multithreaded else SingleThreadedExecutor()
        for node in nodes:
            executor.add_node(node)
        try:
            executor.spin()
        except (KeyboardInterrupt, ExternalShutdownException):
            pass
        return 0
    finally:
        for node in nodes:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()
