"""The per-frame pipeline, written once: detect -> track -> identify -> anonymize -> draw (no ROS).

``FacePipeline`` runs one frame and returns a ``FrameResult`` (faces, track ids, names,
``annotated()``); ``run_passes`` runs a whole input, live or offline (two passes), and
``identity_mode_for`` says which; ``build_recognizer`` / ``build_detector`` / ``build_tracker``
make its parts from settings, ``build_pipeline`` the pipeline of a node's settings. The ROS nodes,
``face-perception bag`` and ``face-perception video`` only convert their inputs and outputs
(docs/architecture.md).
"""
from face_perception.pipeline.build import (
    RecognitionSetup,
    build_detector,
    build_pipeline,
    build_recognizer,
    build_tracker,
    gallery_stamp,
)
from face_perception.pipeline.frame import FacePipeline, FrameResult
from face_perception.pipeline.passes import PassFrame, identity_mode_for, run_passes

__all__ = ["FacePipeline", "FrameResult", "PassFrame", "RecognitionSetup", "build_detector",
           "build_pipeline", "build_recognizer", "build_tracker", "gallery_stamp",
           "identity_mode_for", "run_passes"]
