"""face_perception: face detection and recognition, usable without ROS.

The core library never imports rclpy, cv_bridge or message packages; those live in
``face_perception.ros`` only. Heavy submodules (torch models) are imported lazily by callers.
"""
from face_perception.types import Category, Face

__version__ = "0.1.0"
__all__ = ["Category", "Face", "__version__"]
