"""face_perception: face detection and recognition, usable without ROS.

The core library never imports rclpy, cv_bridge or message packages; those live in
``face_perception.ros`` only. Heavy submodules (torch models) are imported lazily by callers.
"""
from face_perception.threads import apply_openmp_wait_policy
from face_perception.types import Category, Face

apply_openmp_wait_policy()  # before any torch import: OpenMP reads it once (threads.py)

__version__ = "0.1.0"
__all__ = ["Category", "Face", "__version__"]
