"""Declared node parameters: one table per node with type, default, description and valid range.

The table drives the declaration (ParameterDescriptor with ranges, so `ros2 param describe` shows
them), validation of YAML overrides and run-time changes (a reason for every rejection), and the
launch/config documentation. A spec marked ``reload`` rebuilds the model when it changes.
"""
from __future__ import annotations

import array
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.exceptions import ParameterException
from rclpy.parameter import Parameter

from face_perception.detection.config import DETECTOR_BACKBONES
from face_perception.devices import BACKENDS

_TYPES = {bool: ParameterType.PARAMETER_BOOL, int: ParameterType.PARAMETER_INTEGER,
          float: ParameterType.PARAMETER_DOUBLE, str: ParameterType.PARAMETER_STRING}
_ARRAY_TYPES = {bool: ParameterType.PARAMETER_BOOL_ARRAY,
                int: ParameterType.PARAMETER_INTEGER_ARRAY,
                float: ParameterType.PARAMETER_DOUBLE_ARRAY,
                str: ParameterType.PARAMETER_STRING_ARRAY}
_RCLPY_ARRAYS = {bool: Parameter.Type.BOOL_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                 float: Parameter.Type.DOUBLE_ARRAY, str: Parameter.Type.STRING_ARRAY}
# rclpy hands integer and double arrays over as array.array ('q', 'd'), YAML lists and
# in-process values as lists or tuples: all are sequences of the item type.
_SEQUENCES = (list, tuple, array.array)
# Devices a node accepts (the core also takes 'cuda:N'; a node uses the first GPU). The launch
# files import these and BACKENDS, so an argument accepts exactly what the node does.
DEVICES = ("cpu", "cuda")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter. ``low/high`` bound numbers (and each item of a number list); ``choices``
    lists valid strings (and items of a string list); ``reload`` marks model-affecting
    parameters; ``runtime`` False means a change is only taken at the next configure (the value
    is still validated). A list parameter's item type is that of its default's items (bool,
    int, float or str); ``item_type`` says it where the default is empty. ``sentinels`` are
    special numbers valid outside ``low/high`` (``-1`` = "the default rule"); ``nonempty``
    refuses an empty or blank string; ``min_items`` is the least length of a list."""

    name: str
    default: Any
    description: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: Sequence[str] = ()
    reload: bool = False
    runtime: bool = True
    item_type: Optional[type] = None
    sentinels: Sequence[float] = ()
    nonempty: bool = False
    min_items: int = 0

    def __post_init__(self) -> None:
        if self.kind is list and self.items not in _ARRAY_TYPES:
            raise TypeError(f"parameter {self.name}: list items must be bool, int, float or "
                            f"str (give item_type= for an empty default)")

    @property
    def kind(self) -> type:
        return type(self.default)

    @property
    def items(self) -> Optional[type]:
        """Item type of a list parameter (None for scalars)."""
        if self.kind is not list:
            return None
        return self.item_type or (type(self.default[0]) if self.default else None)

    def descriptor(self) -> ParameterDescriptor:
        extra = f" One of: {', '.join(self.choices)}." if self.choices else ""
        ptype = _ARRAY_TYPES[self.items] if self.kind is list else _TYPES[self.kind]
        desc = ParameterDescriptor(name=self.name, type=ptype,
                                   description=self.description + extra,
                                   additional_constraints=self.constraint_text())
        if self.kind is int and self.low is not None:
            desc.integer_range = [IntegerRange(from_value=int(self.low), to_value=int(self.high),
                                               step=1)]
        elif self.kind is float and self.low is not None:
            # rclpy enforces the descriptor's range itself: it must include the sentinels.
            desc.floating_point_range = [FloatingPointRange(
                from_value=float(min((self.low, *self.sentinels))),
                to_value=float(max((self.high, *self.sentinels))), step=0.0)]
        return desc

    def constraint_text(self) -> str:
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None:
            special = "".join(f"{v} or " for v in self.sentinels)
            return f"{special}in [{self.low}, {self.high}]"
        if self.nonempty:
            return "not empty"
        if self.min_items:
            return f"at least {self.min_items} item(s)"
        return ""

    def check(self, value: Any) -> Optional[str]:
        """None when ``value`` is valid for this parameter, else the reason it is not."""
        kind = self.kind
        if kind is list:
            items = self.items
            if not isinstance(value, _SEQUENCES) or \
                    not all(_is_a(v, items) for v in value):
                return (f"{self.name} must be a list of {_TYPE_WORDS[items]}, got "
                        f"{_shown(value)}")
            values = list(value)
            if len(values) < self.min_items:
                return (f"{self.name} needs at least {self.min_items} item(s), got "
                        f"{_shown(value)}")
        elif not _is_a(value, kind):
            return f"{self.name} must be {kind.__name__}, got {type(value).__name__} {value!r}"
        else:
            values = [value]
            if self.nonempty and not value.strip():
                return f"{self.name} must not be empty or blank, got {value!r}"
        if self.choices:
            for v in values:
                if v not in self.choices:
                    return f"{self.name} must be one of {list(self.choices)}, got {v!r}"
        if self.low is not None:
            for v in values:
                if isinstance(v, float) and not math.isfinite(v):
                    return f"{self.name} must be finite, got {v!r}"
                if v not in self.sentinels and not self.low <= v <= self.high:
                    return f"{self.name} must be {self.constraint_text()}, got {v!r}"
        return None

    def normalize(self, value: Any) -> Any:
        """A checked value as the nodes keep it: a plain list of the item type for lists
        (never array.array), float for doubles given as integers."""
        if self.kind is list:
            return [self.items(v) for v in value]
        if self.kind is float:
            return float(value)
        return value


_TYPE_WORDS = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}


def _is_a(value: Any, kind: type) -> bool:
    """``value`` fits a parameter of type ``kind``: bools are not numbers, ints are doubles."""
    if kind is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _shown(value: Any) -> str:
    """``value`` for an error message: sequences as a plain list, whatever rclpy made of them."""
    if isinstance(value, _SEQUENCES):
        return repr(list(value))
    return f"{type(value).__name__} {value!r}"


def declare_checked(node, specs: Sequence[ParamSpec]) -> tuple[dict[str, Any], dict[str, str]]:
    """Declare every spec on ``node`` (YAML/command-line overrides apply); (values, problems).

    An override that is invalid (wrong type, out of range, not a choice) never raises: the
    parameter is declared with its default and ``problems`` maps its name to the reason, so a
    lifecycle node can start, refuse to configure and say why. An integer given for a double
    (``score_threshold: 1`` in a params file) is taken as that double, as ROS users expect.
    """
    values, problems = {}, {}
    overrides = getattr(node, "_parameter_overrides", {})  # rclpy keeps them per node
    for spec in specs:
        declared = spec.default
        given = overrides.get(spec.name)
        if given is not None:
            given = coerce(spec, given)
            # An empty YAML list comes without a type or value (NOT_SET): it is an empty list.
            empty = [] if spec.kind is list else None
            reason = spec.check(empty if given.value is None else given.value)
            if reason:
                problems[spec.name] = reason
            elif given.value is not None:
                declared = spec.normalize(given.value)  # plain list, not rclpy's array.array
        if declared is None or declared == []:
            # rclpy would type an empty list as a byte array: declare its type instead.
            declared = _RCLPY_ARRAYS[spec.items]
        try:
            value = node.declare_parameter(spec.name, declared, spec.descriptor(),
                                           ignore_override=True).value
        except ParameterException as exc:  # checked above; start-up must never end on it
            problems[spec.name] = f"{spec.name}: {exc}"
            value = node.declare_parameter(spec.name, spec.default, spec.descriptor(),
                                           ignore_override=True).value
        values[spec.name] = spec.normalize([] if value is None else value)
    node.add_pre_set_parameters_callback(lambda params: coerce_all(specs, params))
    return values, problems


def gallery_file_problem(path: str, create: bool) -> Optional[str]:
    """Why ``path`` cannot be the recognizer's gallery, or None. Empty means "no gallery" (a
    choice); a missing file is refused unless ``create`` (a new gallery that enrolment makes)."""
    path = str(path).strip()
    if not path or create:
        return None
    from pathlib import Path

    from face_perception.gallery import Gallery

    if Gallery.exists(Path(path).expanduser()):
        return None
    return (f"gallery_path {path!r}: no gallery file "
            f"{Gallery.index_path(Path(path).expanduser())} (make one with `face-perception "
            f"enroll`, or set create_gallery: true to start an empty gallery there)")


def declare(node, specs: Sequence[ParamSpec]) -> dict[str, Any]:
    """declare_checked for nodes without a lifecycle: raises ValueError naming every invalid
    override, so a bad params file fails at start-up with a clear message."""
    values, problems = declare_checked(node, specs)
    if problems:
        raise ValueError("invalid parameters: " + "; ".join(problems.values()))
    return values


def coerce(spec: ParamSpec, param: Parameter) -> Parameter:
    """``param`` with an integer (or integer list) turned into the double(s) ``spec`` declares;
    any other parameter unchanged (the same object)."""
    if spec.kind is float and param.type_ == Parameter.Type.INTEGER:
        return Parameter(param.name, Parameter.Type.DOUBLE, float(param.value))
    if spec.kind is list and spec.items is float and \
            param.type_ == Parameter.Type.INTEGER_ARRAY:
        return Parameter(param.name, Parameter.Type.DOUBLE_ARRAY,
                         [float(v) for v in param.value])
    return param


def coerce_all(specs: Sequence[ParamSpec], params: list) -> list:
    """Pre-set callback: run-time sets (``ros2 param set ... 1``) get the same coercion."""
    by_name = {s.name: s for s in specs}
    return [coerce(by_name[p.name], p) if p.name in by_name else p for p in params]


# Shared by both nodes: how images come in.
IMAGE_INPUT = (
    ParamSpec("autostart", True, "Configure and activate on start-up, so a plain `ros2 run` "
              "works; false waits for lifecycle transitions.", runtime=False),
    ParamSpec("image_transport", "raw", "raw: sensor_msgs/Image on `image`; compressed: "
              "sensor_msgs/CompressedImage (jpeg/png) on `image/compressed`.",
              choices=("raw", "compressed")),
    ParamSpec("qos_reliability", "best_effort", "Image subscription reliability: best_effort "
              "(sensor data, matches camera drivers) or reliable (rosbag replay, no losses). A "
              "shorthand: qos_overrides./<topic>.subscription.reliability wins where set.",
              choices=("best_effort", "reliable")),
    ParamSpec("qos_depth", 5, "Image subscription queue depth (keep last), as in the "
              "sensor-data profile. The worker takes only the newest frame anyway; depth 1 lets "
              "DDS overwrite frames whenever the process is briefly late (docs/transport.md). A "
              "shorthand: qos_overrides./<topic>.subscription.depth wins where set.",
              low=1, high=100),
    ParamSpec("backend", "onnx", "Inference backend: onnx, onnx-int8 (guarded int8 graphs; the "
              "detector's is refused on the shipped photos, so in the recognizer it applies to "
              "the embedder only; docs/detection.md#int8) or torch.",
              choices=BACKENDS, reload=True),
    ParamSpec("calibration", "", "Folder of photos calibrating onnx-int8; empty = the int8 graph "
              "recorded in the model folder (face-perception quantize), else the shipped photos.",
              reload=True),
    ParamSpec("num_threads", 0, "onnxruntime intra-op threads of this node's sessions; 0 = "
              "every usable core (the process's CPU affinity); 1 when other heavy jobs share "
              "the cores (docs/ros.md#threads).", low=0, high=256,
              reload=True),
    ParamSpec("device", "cpu", "Inference device (cuda falls back to cpu with a warning when "
              "unavailable: the fallback is logged and diagnostics report the device in use).",
              choices=DEVICES, reload=True),
    ParamSpec("publish_annotated", True, "Publish an annotated image topic; it is only drawn "
              "while someone subscribes."),
    ParamSpec("anonymize", "none", "Faces pixelated in the annotated image (docs/privacy.md): "
              "none, unknown (faces without a name; the detector names nobody) or all.",
              choices=("none", "unknown", "all")),
)

# Shared by both nodes: the face tracker (face_perception.tracking.TrackerConfig), times in
# seconds of header stamps. A change starts every track again.
TRACKING = (
    ParamSpec("tracking", True, "Track faces across frames: stable track ids in Detection2D.id "
              "(and, in the recognizer, one identity per track); false: every frame alone, "
              "empty ids."),
    ParamSpec("track_high_score", 0.6, "Faces scoring at least this are matched to tracks "
              "first and may start tracks; lower ones only continue a track seen in the "
              "previous frame.", low=0.0, high=1.0),
    ParamSpec("track_new_score", 0.6, "Least score of a face that starts a new track.",
              low=0.0, high=1.0),
    ParamSpec("track_match_iou", 0.2, "Least IoU between a track's predicted box and a face "
              "to continue the track.", low=0.0, high=1.0),
    ParamSpec("track_low_match_iou", 0.5, "Least IoU for a low-score face to continue a "
              "track.", low=0.0, high=1.0),
    ParamSpec("track_confirm_hits", 3, "Consecutive frames before a track is confirmed and "
              "its id published.", low=1, high=100),
    ParamSpec("track_max_age", 1.0, "Seconds without a detection after which a track ends.",
              low=0.01, high=3600.0),
    ParamSpec("track_scene_cut", 0.5, "Colour-histogram distance (Bhattacharyya) of a scene "
              "cut, which ends every track; 0 = no cut detection.", low=0.0, high=1.0),
)
TRACKING_KEYS = frozenset(s.name for s in TRACKING)

DETECTOR = IMAGE_INPUT + (
    ParamSpec("backbone", "mnet", "Detector: RetinaFace mnet (ships pretrained), resnet (needs "
              "model_path or downloaded weights) or yunet (YuNet-n, ships pretrained).",
              choices=DETECTOR_BACKBONES, reload=True),
    ParamSpec("model_path", "", "Detector model folder (from detector-train), .pth weights or "
              ".onnx file; empty = the shipped pretrained model.", reload=True),
    ParamSpec("score_threshold", -1.0, "Minimum face score; -1 = the backbone's own (0.5 "
              "RetinaFace, 0.87 YuNet: equal recall).", low=0.0, high=1.0, sentinels=(-1.0,)),
    ParamSpec("nms_threshold", 0.4, "IoU above which overlapping boxes are merged.",
              low=0.01, high=1.0),
    ParamSpec("target_size", 640, "Short image side is resized towards this many pixels.",
              low=32, high=4096),
    ParamSpec("max_size", 640, "Long image side is never resized above this many pixels: 640 "
              "keeps 1280x720 and 1920x1080 cameras at 30 Hz on a small CPU, with a least "
              "face of 48 px at 720p and 64 px at 1080p (docs/detection.md#cameras).",
              low=32, high=8192),
    ParamSpec("scales", [1.0], "Test-time scale pyramid (multipliers of the sized image); "
              "[1.0] = single scale.", low=0.1, high=4.0, min_items=1),
    ParamSpec("flip", False, "Horizontal-flip test-time augmentation."),
    ParamSpec("max_faces", 0, "Keep at most this many faces per frame (best first); "
              "0 = no limit.", low=0, high=1000),
    ParamSpec("process_every_n", 1, "Frame skipping: process one received frame in N.",
              low=1, high=100),
) + TRACKING

RECOGNIZER = IMAGE_INPUT + (
    ParamSpec("model", "dlib_resnet", "Embedding model: a registered name or a model folder.",
              reload=True),
    ParamSpec("gallery_path", "", "Gallery file of known identities; empty = every face is "
              "'unknown' (with a warning). A file that does not exist is refused at configure "
              "unless create_gallery is true."),
    ParamSpec("create_gallery", False, "true: a gallery_path with no file yet is a new, empty "
              "gallery that ~/enroll (or learn_unknown) creates; false: a missing file is "
              "refused, so a mistyped path cannot make everyone 'unknown' unnoticed."),
    ParamSpec("threshold", -1.0, "Open-set threshold: cosine similarity a name needs; -1 = the "
              "gallery's calibrated rule, else the model's open-set default.", low=0.0, high=1.0,
              sentinels=(-1.0,)),
    ParamSpec("margin", -1.0, "Open-set margin: lead over the second-best identity a name "
              "needs; -1 = the gallery's calibrated rule, else the model's open-set default.",
              low=0.0, high=1.0, sentinels=(-1.0,)),
    ParamSpec("gallery_poll_period", 2.0, "Seconds between checks of the gallery file's "
              "modification time (reload on change); 0 disables.", low=0.0, high=3600.0),
    ParamSpec("pair_buffer_size", 10, "Images and detections waiting for their partner "
              "(matched by stamp and frame_id); the oldest is dropped beyond this.",
              low=1, high=100),
    ParamSpec("unknown_label", "unknown", "class_id published for faces matching no identity.",
              nonempty=True),
    ParamSpec("enroll_frames", 10, "~/enroll action from a track: processed frames watched "
              "when the goal gives 0 (goals: 1..300).", low=1, high=300),
    ParamSpec("enroll_max_samples", 5, "~/enroll: at most this many of the best distinct views "
              "enrolled when the goal gives 0 (goals: 1..50).", low=1, high=50),
    ParamSpec("enroll_timeout", 30.0, "~/enroll action: seconds a goal waits for its frames "
              "when it gives 0 (goals: up to 600); then nothing is enrolled.",
              low=0.1, high=600.0),
    ParamSpec("enroll_max_frame_age", 1.0, "~/enroll of the largest face: the last processed "
              "frame is used only when at most this many seconds old, else the next frame "
              "(0: always the next frame). An older frame may show someone who has left.",
              low=0.0, high=60.0),
    ParamSpec("forget_compacts", True, "~/forget rewrites the gallery so that the person's "
              "embeddings are physically deleted at once; false writes a small tombstone "
              "segment instead (data gone at the next compaction).", runtime=True),
    ParamSpec("learn_unknown", False, "Enrol a confirmed track that stays unknown as anon_<n> "
              "(saved in the gallery), like ROS4HRI's can_learn_new_faces. Off by default: it "
              "stores strangers' embeddings (docs/privacy.md)."),
    ParamSpec("learn_after", 10, "learn_unknown: good-quality observations of an unknown "
              "track before it is enrolled.", low=1, high=1000),
) + TRACKING + (
    ParamSpec("upstream_max_age", 2.0, "Seconds an upstream track id (Detection2D.id from the "
              "detector) is remembered after it was last seen; while the sender gave ids this "
              "recently, its ids key the identities instead of our tracker.",
              low=0.01, high=3600.0),
    ParamSpec("identity_min_observations", 2, "Embedded views of a track before it can be "
              "named; the name itself comes from the track's accumulated evidence "
              "(docs/open_set.md#tracks).", low=1, high=10),
    ParamSpec("identity_min_agreement", 0.0, "Optional extra guard: share of a track's views "
              "that, judged alone, must give the same name (0: off, the evidence decides).",
              low=0.0, high=1.0),
    ParamSpec("identity_switch_after", 2, "Consecutive disagreeing views before a named "
              "track changes its name (never on one frame).", low=1, high=100),
    ParamSpec("identity_embed_period", 1.0, "Seconds between embeddings of a named track's "
              "face (to confirm the name); new and unnamed tracks are embedded more often.",
              low=0.0, high=3600.0),
)
IDENTITY_KEYS = frozenset({"upstream_max_age", "identity_min_observations",
                           "identity_min_agreement", "identity_switch_after",
                           "identity_embed_period"})
# The recognizer's parameters that change its gallery or open-set rule but not its models (those
# are marked ``reload``): a change reads the gallery again over the loaded embedder and detector.
GALLERY_RULE_KEYS = frozenset({"gallery_path", "threshold", "margin"})
