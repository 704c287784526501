"""Faces followed across frames: a ByteTrack-style tracker and one identity per track (no ROS).

``FaceTracker`` gives each face a stable integer track id; ``TrackIdentities`` accumulates a
track's recognition evidence (live, or whole tracks offline); ``TrackingPipeline`` joins them
(face_perception.pipeline.FacePipeline's middle step for the nodes, ``bag`` and ``video``).
See docs/tracking.md.
"""
from face_perception.tracking.identity import IdentityConfig, TrackIdentities
from face_perception.tracking.pipeline import TrackedFace, TrackingPipeline
from face_perception.tracking.tracker import FaceTracker, TrackerConfig

__all__ = ["FaceTracker", "TrackerConfig", "TrackIdentities", "IdentityConfig",
           "TrackingPipeline", "TrackedFace"]
