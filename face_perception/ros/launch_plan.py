"""What the launch files start, as plain data: executables, names, parameters, remaps, env.

The launch files (launch/*.launch.py) turn these plans into launch_ros ``Node`` actions through
face_perception.ros.launch_builder. Keeping the decisions here, free of ``launch`` imports, lets
them be tested on machines without ``ros2 launch`` and keeps the three launch files consistent.

Parameter layers, later wins: the shipped config/<node>.yaml, the user's ``params_file``, then
only the launch arguments the user set on the command line. An argument left at its empty
default passes nothing, so it never overwrites a value from the user's params file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from face_perception.ros.params import BACKENDS, DEVICES
from face_perception.ros.transport import profile_env

PACKAGE = "face_perception"
TRUE = ("true", "1", "yes", "on")

# Launch arguments: name -> (default, description). Shared by all three launch files.
ARGUMENTS = {
    "image_topic": ("/camera/image_raw", "Camera image topic (raw); compressed images are read "
                    "from <image_topic>/compressed when compressed:=true"),
    "namespace": ("", "Namespace of the nodes; their outputs are <namespace>/faces/..."),
    "params_file": ("", "Extra parameters YAML applied after the shipped defaults (both nodes; "
                    "use /**/face_detector: and /**/face_recognizer: sections)"),
    "use_recognizer": ("true", "Also start face_recognizer (face_perception.launch.py)"),
    "use_container": ("false", "Run both nodes in one face_perception_container process"),
    "device": ("", f"Inference device for both nodes: {' or '.join(DEVICES)} (empty: the "
               "params file's, else the shipped config's cpu)"),
    "backend": ("", f"Inference backend for both nodes: {', '.join(BACKENDS)} (empty: the "
                "params file's, else the shipped config's onnx)"),
    "compressed": ("", "true: subscribe sensor_msgs/CompressedImage on <image_topic>/compressed, "
                   "false: raw images (empty: the params file's image_transport, else raw)"),
    "gallery_path": ("", "Gallery file for face_recognizer (empty: the params file's value)"),
    "hri": ("false", "true: also start face_hri_bridge, which publishes the faces as ROS4HRI "
            "(REP-155) topics under /humans (docs/hri.md)"),
    "dds_profile": ("default", "Fast DDS profile for every started process: default (shipped "
                    "large-frame profile), off, or a path to an XML file"),
}


@dataclass
class NodePlan:
    """One process to start: ``executable`` of package face_perception."""

    executable: str
    name: Optional[str]
    namespace: str
    parameters: list = field(default_factory=list)  # YAML paths, then a dict of set arguments
    remappings: list = field(default_factory=list)
    env: dict = field(default_factory=dict)


def config_dir() -> Path:
    """The installed share/face_perception/config, else the source tree's config/."""
    try:
        from ament_index_python.packages import get_package_share_directory
        installed = Path(get_package_share_directory(PACKAGE)) / "config"
        if installed.is_dir():
            return installed
    except (ImportError, LookupError, OSError, ValueError):
        # ImportError: no ament_index; LookupError/ValueError: package not installed.
        pass
    return Path(__file__).resolve().parents[2] / "config"


def _flag(value: str, name: str) -> bool:
    text = str(value).strip().lower()
    if text in TRUE:
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"launch argument {name} must be true or false, got {value!r}")


def plan(args: dict, nodes: tuple = ("face_detector", "face_recognizer")) -> list[NodePlan]:
    """Processes for launch argument values ``args`` (missing ones take ARGUMENTS defaults)."""
    values = {k: str(args.get(k, default)) for k, (default, _) in ARGUMENTS.items()}
    unknown = set(args) - set(ARGUMENTS)
    if unknown:
        raise ValueError(f"unknown launch arguments: {sorted(unknown)}")
    # The nodes' own lists: an argument takes exactly what the node's parameter takes.
    for key, choices in (("device", DEVICES), ("backend", BACKENDS)):
        if values[key] not in ("", *choices):
            raise ValueError(f"{key} must be one of {list(choices)}, got {values[key]!r}")
    if "face_recognizer" in nodes and not _flag(values["use_recognizer"], "use_recognizer"):
        nodes = tuple(n for n in nodes if n != "face_recognizer")
    env = profile_env(values["dds_profile"])
    topic = values["image_topic"]
    # Compressed input is read from <remapped image>/compressed (the nodes derive it, as
    # image_transport does), so remapping `image` covers both transports.
    remaps = [("image", topic)]
    # Only what the user set: an empty argument must not overwrite their params file.
    overrides = {key: values[key] for key in ("device", "backend") if values[key]}
    if values["compressed"]:
        compressed = _flag(values["compressed"], "compressed")
        overrides["image_transport"] = "compressed" if compressed else "raw"
    recognizer_overrides = dict(overrides)
    if values["gallery_path"]:
        recognizer_overrides["gallery_path"] = values["gallery_path"]
    user_file = [values["params_file"]] if values["params_file"] else []
    cfg = config_dir()
    ns = values["namespace"]
    out = []
    if _flag(values["use_container"], "use_container") and len(nodes) > 1:
        # One process: no name remap (it would rename both nodes); both YAML sections apply.
        params = [*(str(cfg / f"{n}.yaml") for n in nodes), *user_file]
        out.append(NodePlan("face_perception_container", None, ns,
                            params + ([recognizer_overrides] if recognizer_overrides else []),
                            remaps, env))
    else:
        for node in nodes:
            own = recognizer_overrides if node == "face_recognizer" else overrides
            params = [str(cfg / f"{node}.yaml"), *user_file] + ([dict(own)] if own else [])
            out.append(NodePlan(node, node, ns, params, list(remaps), dict(env)))
    if _flag(values["hri"], "hri"):
        # The REP-155 bridge reads raw images and the faces of the last node started: the
        # recognizer's identities, or the detector's faces when no recognizer runs.
        # camera_info (for publish_tf) is the image topic's sibling, as camera drivers name it.
        folder, slash, _ = topic.rpartition("/")
        bridge_remaps = [("image", topic), ("camera_info", folder + slash + "camera_info")]
        if "face_recognizer" not in nodes:
            bridge_remaps.append(("faces/identities", "faces/detections"))
        out.append(NodePlan("face_hri_bridge", "face_hri_bridge", ns, list(user_file),
                            bridge_remaps, dict(env)))
    return out
