"""The package's own ROS interface types (face_perception_interfaces, built from interfaces/):
imported here only, so that where the package comes from is decided in one place."""
from face_perception_interfaces.action import Enroll
from face_perception_interfaces.srv import EnrollIdentity, ForgetIdentity, ListIdentities

__all__ = ["Enroll", "EnrollIdentity", "ForgetIdentity", "ListIdentities"]
