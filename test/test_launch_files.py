"""Launch files and config YAMLs: what they start exists, every parameter is declared and valid.

`ros2 launch` is not installable here; the launch files' decisions live in
face_perception.ros.launch_plan (tested directly), the executables they can name are checked
against the package's entry points, the YAMLs are loaded into real node processes and read back
through real parameter service calls, and the launch files are built where `launch` exists.
"""
import ast
import importlib
import importlib.util
from pathlib import Path

import pytest
import yaml

from face_perception.ros.launch_plan import ARGUMENTS, plan
from face_perception.ros.transport import (
    MODE_ENV_VAR,
    PROFILE_ENV_VARS,
    TransportProfileError,
)

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def console_scripts() -> dict[str, str]:
    """name -> 'module:function' from setup.py's entry_points (parsed, not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return dict((part.strip() for part in s.split("=", 1)) for s in scripts)
    raise AssertionError("setup.py declares no entry_points")


def launch_nodes(path: Path) -> tuple:
    """The NODES tuple a launch file passes to launch_plan.plan (read without importing)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path.name} defines no NODES")


def test_there_are_three_launch_files():
    assert [p.name for p in LAUNCH_FILES] == [
        "face_detector.launch.py", "face_perception.launch.py", "face_recognizer.launch.py"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_every_executable_a_launch_file_can_start_is_an_installed_entry_point(path):
    scripts = console_scripts()
    nodes = launch_nodes(path)
    variants = [{}, {"use_container": "true"}, {"use_recognizer": "false"}]
    executables = {p.executable for v in variants for p in plan(v, nodes)}
    assert executables, path
    for exe in executables:
        assert exe in scripts, f"{path.name} starts {exe!r}, not a console script"
        module, func = scripts[exe].split(":")
        assert callable(getattr(importlib.import_module(module), func))
    import face_perception
    from test.ros_harness import installed_script
    if "install" in Path(face_perception.__file__).parts:  # under colcon test: really installed
        for exe in executables:
            assert installed_script(exe) is not None, exe


def test_default_plan_starts_detector_and_recognizer_with_remaps_config_and_dds_profile():
    det, rec = plan({"image_topic": "/cam/front/image_raw", "namespace": "robot1"})
    assert (det.executable, det.name, rec.executable, rec.name) == (
        "face_detector", "face_detector", "face_recognizer", "face_recognizer")
    for p in (det, rec):
        assert p.namespace == "robot1"
        assert ("image", "/cam/front/image_raw") in p.remappings
        assert ("image/compressed", "/cam/front/image_raw/compressed") in p.remappings
        assert Path(p.parameters[0]).name == f"{p.executable}.yaml"
        assert Path(p.parameters[0]).is_file()
        assert p.parameters[-1]["image_transport"] == "raw"
        assert set(p.env) == set(PROFILE_ENV_VARS)
        assert all(Path(v).is_file() and v.endswith(".xml") for v in p.env.values())


def test_plan_arguments_switch_profile_container_recognizer_and_transport(tmp_path):
    for p in plan({"dds_profile": "off"}):  # no Fast DDS variable; our nodes told to stay off
        assert not set(p.env) & set(PROFILE_ENV_VARS) and p.env[MODE_ENV_VAR] == "off"
    custom = tmp_path / "my_profile.xml"
    custom.write_text("<profiles/>")
    assert all(set(p.env.values()) == {str(custom.resolve())}
               for p in plan({"dds_profile": str(custom)}))
    with pytest.raises(TransportProfileError, match="does not exist"):
        plan({"dds_profile": str(tmp_path / "missing.xml")})
    (only,) = plan({"use_recognizer": "false"})
    assert only.executable == "face_detector"
    (container,) = plan({"use_container": "true", "gallery_path": "/data/people.json"})
    assert container.executable == "face_perception_container" and container.name is None
    assert [Path(p).name for p in container.parameters[:2]] == [
        "face_detector.yaml", "face_recognizer.yaml"]
    assert container.parameters[-1]["gallery_path"] == "/data/people.json"
    det, rec = plan({"compressed": "true", "device": "cuda", "backend": "torch",
                     "params_file": "/etc/robot/faces.yaml"})
    assert det.parameters[-1] == {"device": "cuda", "backend": "torch",
                                  "image_transport": "compressed"}
    assert det.parameters[1] == rec.parameters[1] == "/etc/robot/faces.yaml"
    with pytest.raises(ValueError, match="device must be cpu or cuda"):
        plan({"device": "gpu"})
    with pytest.raises(ValueError, match="compressed must be true or false"):
        plan({"compressed": "maybe"})
    with pytest.raises(ValueError, match="unknown launch arguments"):
        plan({"imagetopic": "/x"})


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_builds_a_description(path):
    # The repo's own launch/ folder is importable as a namespace package named "launch":
    # only the real ROS 2 package has LaunchDescription.
    launch = pytest.importorskip("launch", reason="ROS 2 launch is not installed")
    if not hasattr(launch, "LaunchDescription"):
        pytest.skip("ROS 2 launch is not installed (only the repo's launch/ folder)")
    pytest.importorskip("launch_ros", reason="ROS 2 launch_ros is not installed")
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    declared = {a.name for a in description.get_launch_arguments()}
    assert declared == set(module.USED) and declared <= set(ARGUMENTS)


def test_launch_files_declare_only_known_arguments():
    # Checked without `launch`: the USED names each file declares exist in ARGUMENTS.
    for path in LAUNCH_FILES:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "USED":
                used = node.value
                if isinstance(used, ast.Call):  # tuple(ARGUMENTS)
                    continue
                assert set(ast.literal_eval(used)) <= set(ARGUMENTS), path.name


# ---- config YAMLs loaded into real nodes ---------------------------------------------------

def yaml_params(name: str) -> dict:
    data = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    (section,) = data.values()
    return section["ros__parameters"]


def _value(pv):
    from rcl_interfaces.msg import ParameterType as T
    return {T.PARAMETER_BOOL: lambda: pv.bool_value,
            T.PARAMETER_INTEGER: lambda: pv.integer_value,
            T.PARAMETER_DOUBLE: lambda: pv.double_value,
            T.PARAMETER_STRING: lambda: pv.string_value,
            T.PARAMETER_DOUBLE_ARRAY: lambda: list(pv.double_array_value)}[pv.type]()


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name,specs", [("face_detector", "DETECTOR"),
                                        ("face_recognizer", "RECOGNIZER")])
def test_config_yaml_is_exactly_the_declared_parameters_and_loads_into_the_node(
        name, specs, tmp_path):
    rclpy = pytest.importorskip("rclpy", reason="ROS 2 (rclpy) not installed")
    from rcl_interfaces.srv import GetParameters, ListParameters

    from face_perception.ros import params as param_tables
    from test.ros_harness import Listener, node_args, start, unique_ns, until

    table = {s.name: s for s in getattr(param_tables, specs)}
    values = yaml_params(name)
    assert set(values) == set(table), "YAML and declared parameters differ"
    for key, value in values.items():
        assert table[key].check(value) is None, table[key].check(value)
    text = (REPO / "config" / f"{name}.yaml").read_text()
    for key in values:  # every parameter has a comment line right above it
        lines = text.splitlines()
        i = next(n for n, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
        assert lines[i - 1].strip().startswith("#"), f"{key} has no comment"

    ns = unique_ns(f"/yaml_{name}")
    # autostart off: the parameters are what is tested here, not the model.
    proc = start(name, tmp_path, node_args(ns, REPO / "config" / f"{name}.yaml",
                                           ["-p", "autostart:=false"]))
    rclpy.init()
    try:
        ros = Listener(f"yaml_reader_{name}")
        node = f"{ns}/{name}"
        listed = ros.call(ListParameters, f"{node}/list_parameters",
                          ListParameters.Request(), timeout=90).result.names
        assert set(table) <= set(listed), proc.output()
        keys = sorted(values)
        got = ros.call(GetParameters, f"{node}/get_parameters",
                       GetParameters.Request(names=keys)).values
        for key, pv in zip(keys, got):
            want = False if key == "autostart" else values[key]
            assert _value(pv) == pytest.approx(want) if isinstance(want, float) else \
                _value(pv) == want, (key, _value(pv), want)
        assert until(lambda: proc.alive(), 1)
        ros.close()
    finally:
        rclpy.shutdown()
        assert proc.stop() in (0, -2), proc.log_path.read_text()
