"""``face_perception_container``: face_detector and face_recognizer in one process.

A MultiThreadedExecutor runs both nodes' callbacks; each node keeps its own worker thread and
its own models. What is shared is the process: one Python interpreter and one copy of the
inference libraries in memory, and detections reach the recognizer through Fast DDS's
intra-process delivery instead of a transport between processes (rclpy still serialises each
message). Node options (remaps, --params-file) apply to both nodes.
"""
from __future__ import annotations

from typing import Optional

from face_perception.ros.detector_node import DetectorNode
from face_perception.ros.recognizer_node import RecognizerNode
from face_perception.ros.runner import run_nodes


def main(args: Optional[list[str]] = None) -> int:
    return run_nodes([DetectorNode, RecognizerNode], args, multithreaded=True,
                     prog="face_perception_container")


if __name__ == "__main__":
    raise SystemExit(main())
