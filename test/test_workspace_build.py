"""The README's ROS 2 workspace install, done for real: the repository's files in a fresh
workspace's ``src/``, found by colcon and by catkin_pkg (rosdep's crawler), built by ``colcon
build``, and, after ``source install/setup.bash``, the recognizer's service types import from the
install (and work over DDS) and ``face-perception`` is on PATH.

The venv's ROS 2 wheels stand in for ``/opt/ros/jazzy``: AMENT_PREFIX_PATH/CMAKE_PREFIX_PATH name
the venv (what sourcing the distro's setup does) and ``-DPython3_EXECUTABLE`` its Python. One slow
test (a CMake build of the generated types), no time budget.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
VENV = VENV_BIN.parent
# The commands of docs/ros.md ("Workspace install") that this test runs verbatim; a distro install
# adds nothing to them, the PyPI-wheel venv only the --cmake-args below.
CLONE_TO = "src/face_perception"
DISCOVER = "colcon list --base-paths src"
ROSDEP = "rosdep install --from-paths src --ignore-src -y"
BUILD = "colcon build --packages-up-to face_perception"
SOURCE = "source install/setup.bash"
SERVICES = ("EnrollIdentity", "ForgetIdentity", "ListIdentities")


def repository_files() -> list[str]:
    """What `git clone` gives: the tracked files (plus new, not yet committed, unignored ones)."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                         cwd=REPO, capture_output=True, check=True).stdout.decode()
    return [f for f in out.split("\0") if f and (REPO / f).is_file()]


def base_env() -> dict[str, str]:
    """This process's environment without any workspace or development overlay on it."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH",
                        "COLCON_PREFIX_PATH", "AMENT_CURRENT_PREFIX")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(cmd: list[str] | str, cwd: Path, env: dict[str, str]) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                         shell=isinstance(cmd, str), executable="/bin/bash" if
                         isinstance(cmd, str) else None)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


# Runs in the sourced workspace: where everything comes from, and one service call over DDS.
PROBE = textwrap.dedent("""
    import json, sys
    import rclpy
    import face_perception, face_perception.srv
    from face_perception.ros.interfaces import EnrollIdentity, ForgetIdentity, ListIdentities
    import face_perception.ros.recognizer_node

    def list_identities(request, response):
        response.names, response.sample_counts = ["ada"], [3]
        return response

    rclpy.init()
    node = rclpy.create_node("workspace_probe")
    server = node.create_service(ListIdentities, "list_identities", list_identities)
    client = node.create_client(ListIdentities, "list_identities")
    assert client.wait_for_service(timeout_sec=300.0)  # a hang guard only
    future = client.call_async(ListIdentities.Request())
    rclpy.spin_until_future_complete(node, future, timeout_sec=300.0)
    reply = future.result()
    # every shared object of ours loaded: the C extensions and the generated type libraries
    libs = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if "face_perception" in line.split()[-1].rsplit("/", 1)[-1]})
    print(json.dumps({
        "package": face_perception.__file__,
        "srv": face_perception.srv.__file__,
        "recognizer": face_perception.ros.recognizer_node.__file__,
        "types": [t.__module__ for t in (EnrollIdentity, ForgetIdentity, ListIdentities)],
        "reply": [list(reply.names), list(reply.sample_counts)],
        "libs": libs,
    }))
    node.destroy_node()
    rclpy.shutdown()
""")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("ros2_ws")
    for name in repository_files():
        dest = ws / CLONE_TO / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, dest)
    return ws


def test_colcon_and_rosdep_discover_the_one_package_with_its_services(workspace):
    from catkin_pkg.packages import find_packages

    listed = run(DISCOVER.split() + ["--names-only"], workspace, base_env()).split()
    assert listed == ["face_perception"]
    # What `rosdep install --from-paths src` reads: every package.xml below src/ it can reach.
    found = find_packages(str(workspace / "src"))
    assert [p.name for p in found.values()] == ["face_perception"]
    (package,) = found.values()
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]
    depends = {d.name for d in
               package.buildtool_depends + package.build_depends + package.exec_depends}
    assert {"rosidl_default_generators", "rosidl_default_runtime", "hri_msgs"} <= depends
    # Nothing the workspace cannot resolve: no package of ours that only lives below the root.
    assert "face_perception_interfaces" not in depends


def test_workspace_build_installs_services_and_face_perception_command(workspace):
    env = base_env()
    # The venv's ROS 2 wheels play the sourced distro (/opt/ros/jazzy/setup.bash).
    env["AMENT_PREFIX_PATH"] = env["CMAKE_PREFIX_PATH"] = str(VENV)
    run(BUILD.split() + ["--event-handlers", "console_cohesion+",
                         "--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}"],
        workspace, env)
    install = workspace / "install"
    prefix = install / "face_perception"
    # `ros2 run face_perception <node>` looks in lib/face_perception.
    for node in ("face_detector", "face_recognizer", "face_perception_container",
                 "face_perception_replay", "face_hri_bridge", "face-perception"):
        assert os.access(prefix / "lib/face_perception" / node, os.X_OK), node
    share = prefix / "share/face_perception"
    for folder, patterns in (("launch", ["*.launch.py"]), ("config", ["*.yaml", "*.xml"])):
        shipped = {p.name for pattern in patterns for p in (REPO / folder).glob(pattern)}
        assert shipped and {p.name for p in (share / folder).iterdir()} == shipped, folder
    assert sorted(p.stem for p in (share / "srv").glob("*.srv")) == sorted(SERVICES)

    # The sourced workspace alone: no development overlay, the install's own libraries first.
    # (this machine's DDS settings, ROS_DOMAIN_ID and the loopback range, come from conftest.py)
    sourced = base_env()
    sourced["AMENT_PREFIX_PATH"] = str(VENV)
    where = run(f"{SOURCE} && command -v face-perception && face-perception --help",
                workspace, sourced)
    assert where.splitlines()[0] == str(prefix / "bin/face-perception")
    assert "usage: face-perception" in where
    probe = workspace / "probe.py"
    probe.write_text(PROBE)
    report = json.loads(run(f"{SOURCE} && cd / && python {probe}", workspace,
                            sourced).splitlines()[-1])
    site = prefix / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" \
        / "site-packages/face_perception"
    # Our __init__.py, not rosidl's empty one, and the generated types beside our modules.
    assert report["package"] == str(site / "__init__.py")
    assert "extend_path" in (site / "__init__.py").read_text()
    assert report["srv"] == str(site / "srv/__init__.py")
    assert report["recognizer"] == str(site / "ros/recognizer_node.py")
    assert report["types"] == [f"face_perception.srv._{n}" for n in
                               ("enroll_identity", "forget_identity", "list_identities")]
    assert report["reply"] == [["ada"], [3]]
    assert report["libs"] and all(lib.startswith(f"{prefix}/") for lib in report["libs"]), \
        report["libs"]


def test_docs_show_the_workspace_install_this_test_runs():
    page = (REPO / "docs/ros.md").read_text()
    section = page.split("## Workspace install", 1)[1].split("\n## ", 1)[0]
    for command in (f"git clone <this repository> {CLONE_TO.split('/')[-1]}", ROSDEP, BUILD,
                    SOURCE, "face-perception info"):
        assert command in section, command
