"""Entry-point glue: apply the DDS profile, init rclpy, spin nodes, shut down on SIGINT.

A node process ends only on SIGINT or a ROS shutdown: an exception that escapes a callback
(rclpy's executor re-raises it out of ``spin``) is logged through the node's logger and the
executor spins on, so one bad request cannot take a robot's perception down.
"""
from __future__ import annotations

import sys
import traceback
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
    from rclpy.executors import MultiThreadedExecutor, SingleThreadedExecutor

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
        spin_until_shutdown(executor, nodes[0].get_logger() if nodes else None)
        return 0
    finally:
        for node in nodes:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()


def spin_until_shutdown(executor, logger) -> int:
    """Spin until SIGINT or shutdown; returns how many callback exceptions were survived."""
    from rclpy.executors import ExternalShutdownException

    survived = 0
    while True:
        try:
            executor.spin()
            return survived
        except (KeyboardInterrupt, ExternalShutdownException):
            return survived
        except Exception as exc:  # noqa: BLE001 - log it and keep the node serving
            survived += 1
            text = (f"a callback raised {type(exc).__name__}: {exc} (request or message "
                    f"dropped; the node keeps running)\n{traceback.format_exc()}")
            if logger is not None:
                logger.error(text, throttle_duration_sec=5.0)
            else:
                print(text, file=sys.stderr)
