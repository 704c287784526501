"""Entry-point glue: apply the DDS profile, init rclpy, spin nodes, shut down on SIGINT."""
from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from face_perception.ros.transport import TransportProfileError, apply_profile


def run_nodes(factories: Sequence[Callable[[], object]], args: Optional[list[str]] = None,
              multithreaded: bool = False, prog: str = "face_perception") -> int:
    """Create the nodes (after rclpy.init), spin them until SIGINT, release them; exit code."""
    try:
        # Nodes publish annotated images (large): the profile must be loaded before rclpy.init.
        # FACE_PERCEPTION_DDS_PROFILE (default, off or a path) chooses; a profile already named
        # by the Fast DDS variables (the user's, or our launch files') wins.
        apply_profile()
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
