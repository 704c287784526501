"""Declared node parameters: one table per node with type, default, description and valid range.

The table drives the declaration (ParameterDescriptor with ranges, so `ros2 param describe` shows
them), validation of YAML overrides and run-time changes (a reason for every rejection), and the
launch/config documentation. A spec marked ``reload`` rebuilds the model when it changes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING,
          list: ParameterType.PARAMETER_DOUBLE_ARRAY}


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. ``low/high`` bound numbers (and each item of a float list); ``choices``
    lists valid strings; ``reload`` marks model-affecting parameters; ``runtime`` False means a
    change is only taken at the next configure (the value is still validated)."""

    name: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Sequence[str] = ()
    reload: bool = False
    runtime: bool = True

    @property
    def kind(self) -> type:
        return type(self.default)

    def descriptor(self) -> ParameterDescriptor:
        extra = f" One of: {', '.join(self.choices)}." if self.choices else ""
        desc = ParameterDescriptor(name=self.name, type=_TYPES[self.kind],
                                   description=self.description + extra,
                                   additional_constraints=self.constraint_text())
        if self.kind is int and self.low is not None:
            desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high),
                                               step=1)]
        elif self.kind is float and self.low is not None:
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(self.low), to_value=float(self.high), step=0.0)]
        return desc

    def constraint_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None:
            return f"in [{self.low}, {self.high}]"
        return ""

    def check(self, value: Any) -> Optional[str]:
        """None when ``value`` is valid for this parameter, else the reason it is not."""
        kind = self.kind
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is list:
            if not isinstance(value, (list, tuple)) or \
                    not all(isinstance(v, (int, float)) for v in value):
                return f"{self.name} must be a list of numbers, got {value!r}"
            items = [float(v) for v in value]
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"{self.name} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        else:
            items = [value]
        if self.choices and value not in self.choices:
            return f"{self.name} must be one of {list(self.choices)}, got {value!r}"
        if self.low is not None and kind in (int, float, list):
            for v in items:
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{self.name} must be finite, got {v!r}"
                if not self.low <= v <= self.high:
                    return f"{self.name} must be in [{self.low}, {self.high}], got {v!r}"
        return None


def declare(node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """Declare every spec on ``node`` (YAML overrides apply) and return the validated values.

    Raises ValueError naming every invalid override, so a bad params file fails at start-up
    with a clear message rather than at the first frame.
    """
    values, errors = {}, []
    for spec in specs:
        # Float lists are declared with a non-empty default so rclpy infers DOUBLE_ARRAY.
        value = node.declare_parameter(spec.name, spec.default, spec.descriptor()).value
        if spec.kind is float and isinstance(value, int):
            value = float(value)
        reason = spec.check(value)
        if reason:
            errors.append(reason)
        values[spec.name] = list(value) if spec.kind is list else value
    if errors:
        raise ValueError("invalid parameters: " + "; ".join(errors))
    return values


# Shared by both nodes: how images come in.
IMAGE_INPUT = (
    ParamSpec("autostart", True, "Configure and activate on start-up, so a plain `ros2 run` "
              "works; false waits for lifecycle transitions.", runtime=False),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: "
              "sensor_msgs/CompressedImage (jpeg/png) on `image/compressed`.",
              choices=("raw", "compressed")),
    ParamSpec("qos_reliability", "best_effort", "Image subscription reliability: best_effort "
              "(sensor data, matches camera drivers) or reliable (rosbag replay, no losses).",
              choices=("best_effort", "reliable")),
    ParamSpec("qos_depth", 5, "Image subscription queue depth (keep last), as in the "
              "sensor-data profile. The worker takes only the newest frame anyway; depth 1 lets "
              "DDS overwrite frames whenever the process is briefly late (docs/transport.md).",
              low=1, high=100),
    ParamSpec("backend", "onnx", "Inference backend.", choices=("onnx", "torch"), reload=True),
    ParamSpec("device", "cpu", "Inference device (cuda falls back to cpu with a warning when "
              "unavailable).", choices=("cpu", "cuda"), reload=True),
    ParamSpec("publish_annotated", True, "Publish an annotated image topic; it is only drawn "
              "while someone subscribes."),
)

DETECTOR = IMAGE_INPUT + (
    ParamSpec("backbone", "mnet", "RetinaFace backbone (mnet ships pretrained; resnet needs "
              "model_path or downloaded weights).", choices=("mnet", "resnet"), reload=True),
    ParamSpec("model_path", "", "Detector model folder (from detector-train), .pth weights or "
              ".onnx file; empty = the shipped pretrained model.", reload=True),
    ParamSpec("score_threshold", 0.5, "Minimum face score.", low=0.0, high=1.0),
    ParamSpec("nms_threshold", 0.4, "IoU above which overlapping boxes are merged.",
              low=0.01, high=1.0),
    ParamSpec("target_size", 640, "Short image side is resized towards this many pixels.",
              low=32, high=4096),
    ParamSpec("max_size", 1280, "Long image side is never resized above this many pixels.",
              low=32, high=8192),
    ParamSpec("scales", [1.0], "Test-time scale pyramid (multipliers of the sized image); "
              "[1.0] = single scale.", low=0.1, high=4.0),
    ParamSpec("flip", False, "Horizontal-flip test-time augmentation."),
    ParamSpec("max_faces", 0, "Keep at most this many faces per frame (best first); "
              "0 = no limit.", low=0, high=1000),
    ParamSpec("process_every_n", 1, "Frame skipping: process one received frame in N.",
              low=1, high=100),
)

RECOGNIZER = IMAGE_INPUT + (
    ParamSpec("model", "dlib_resnet", "Embedding model: a registered name or a model folder.",
              reload=True),
    ParamSpec("gallery_path", "", "Gallery file of known identities; empty or missing = every "
              "face is 'unknown' (with a warning)."),
    ParamSpec("threshold", -1.0, "Cosine similarity above which a face matches an identity; "
              "-1 = the model's calibrated threshold.", low=-1.0, high=1.0),
    ParamSpec("gallery_poll_period", 2.0, "Seconds between checks of the gallery file's "
              "modification time (reload on change); 0 disables.", low=0.0, high=3600.0),
    ParamSpec("pair_buffer_size", 10, "Images and detections waiting for their partner "
              "(matched by stamp and frame_id); the oldest is dropped beyond this.",
              low=1, high=100),
    ParamSpec("unknown_label", "unknown", "class_id published for faces matching no identity."),
)
