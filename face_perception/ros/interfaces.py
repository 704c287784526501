"""The package's own ROS interface types, in one place: every user (nodes, tests, tools) imports
them from here, so where they are generated can change in one line.

The definitions are the files of interfaces/face_perception_interfaces/; the package's
CMakeLists.txt generates them as face_perception.srv and face_perception.action, type names
``face_perception/srv/...`` and ``face_perception/action/...``.
"""
from face_perception.action import Enroll
from face_perception.srv import EnrollIdentity, ForgetIdentity, ListIdentities

__all__ = ["Enroll", "EnrollIdentity", "ForgetIdentity", "ListIdentities"]
