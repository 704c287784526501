"""face_perception: face detection and recognition, usable without ROS.

The core library never imports rclpy, cv_bridge or message packages; those live in
``face_perception.ros`` only. Heavy submodules (torch models) are imported lazily by callers.
"""
import pkgutil

from face_perception.threads import apply_openmp_wait_policy
from face_perception.types import Category, Face

apply_openmp_wait_policy()  # before any torch import: OpenMP reads it once (threads.py)

# The generated ROS types (face_perception.srv, .action; see CMakeLists.txt) may be in another
# folder named face_perception on sys.path: the development venv's site-packages, beside this
# editable source tree. In a ROS workspace's install they are in this very folder.
__path__ = pkgutil.extend_path(__path__, __name__)

__version__ = "0.1.0"
__all__ = ["Category", "Face", "__version__"]
