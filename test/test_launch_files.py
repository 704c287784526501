"""Launch files and config YAMLs: what they start exists, every parameter is declared and valid.

`ros2 launch` is not installable here. Checked here: the launch files' decisions
(face_perception.ros.launch_plan), the parameter layering in a real node, that each launch file
loads and names only known arguments and installed entry points, and that setup.py installs every
launch and config file. Building the LaunchDescription with the real `launch` packages is marked
``needs_ros_distro`` (deselected by `make test`; docs/ros.md says how to run it).
"""
import ast
import configparser
import importlib.util
from glob import glob
from pathlib import Path

import pytest
import yaml

from face_perception.ros.launch_plan import ARGUMENTS, plan
from face_perception.ros.processes import entry_point
from face_perception.ros.transport import (
    MODE_ENV_VAR,
    PROFILE_ENV_VARS,
    TransportProfileError,
)
from test.ros_harness import get_params, start, unique_ns, write_params

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((REPO / "launch").glob("*.launch.py"))


def setup_keyword(name: str):
    """A keyword argument of setup.py's setup() call (parsed, not executed)."""
    tree = ast.parse((REPO / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == name:
            return node.value
    raise AssertionError(f"setup.py passes no {name}")


def console_scripts() -> dict[str, str]:
    """name -> 'module:function' from setup.cfg's entry_points (pip and CMakeLists.txt read it)."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return dict((part.strip() for part in s.split("=", 1)) for s in scripts)


def load_launch_file(path: Path):
    """Execute a launch file as a module (it imports `launch` only when building)."""
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_three_launch_files():
    assert [p.name for p in LAUNCH_FILES] == [
        "face_detector.launch.py", "face_perception.launch.py", "face_recognizer.launch.py"]


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_loads_and_plans_only_installed_entry_points_and_known_arguments(path):
    module = load_launch_file(path)
    assert callable(module.generate_launch_description)
    assert set(module.USED) <= set(ARGUMENTS) and len(set(module.USED)) == len(module.USED)
    assert set(module.NODES) <= {"face_detector", "face_recognizer"}
    scripts = console_scripts()
    variants = [{}, {"use_container": "true"}, {"use_recognizer": "false"}]
    plans = [p for v in variants for p in plan({k: x for k, x in v.items() if k in module.USED},
                                               module.NODES)]
    executables = {p.executable for p in plans}
    assert executables >= set(module.NODES), path.name
    for exe in executables:
        assert exe in scripts, f"{path.name} starts {exe!r}, not a console script"
        assert entry_point(exe).is_file()
    for p in plans:  # every file a plan names exists
        assert all(Path(f).is_file() for f in p.parameters if isinstance(f, str)), p


def test_setup_installs_every_launch_and_config_file():
    # setup.py's data_files expression, evaluated as setup.py would from the repository root.
    expr = ast.Expression(setup_keyword("data_files"))
    data_files = eval(compile(expr, "setup.py", "eval"),  # noqa: S307 - our own setup.py
                      {"glob": lambda pattern: sorted(glob(pattern, root_dir=REPO)),
                       "PACKAGE": "face_perception"})
    installed = {target: set(files) for target, files in data_files}
    launch = installed["share/face_perception/launch"]
    assert launch == {f"launch/{p.name}" for p in LAUNCH_FILES}
    config = installed["share/face_perception/config"]
    assert {"config/face_detector.yaml", "config/face_recognizer.yaml",
            "config/fastdds_large_frames.xml"} <= config
    # Every config file a plan names ships (the plan reads the installed copy under colcon).
    shipped = {Path(c).name for c in config}
    for variant in ({}, {"use_container": "true"}):
        for p in plan(variant):
            for f in p.parameters:
                if isinstance(f, str):
                    assert Path(f).parent.name == "config" and Path(f).name in shipped, f


def test_default_plan_starts_detector_and_recognizer_with_remaps_config_and_dds_profile():
    det, rec = plan({"image_topic": "/cam/front/image_raw", "namespace": "robot1"})
    assert (det.executable, det.name, rec.executable, rec.name) == (
        "face_detector", "face_detector", "face_recognizer", "face_recognizer")
    for p in (det, rec):
        assert p.namespace == "robot1"
        # compressed input follows the `image` remap in the node (<image>/compressed)
        assert p.remappings == [("image", "/cam/front/image_raw")]
        # Only the shipped config: no argument was set, so nothing overrides it.
        assert [Path(f).name for f in p.parameters] == [f"{p.executable}.yaml"]
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
    assert container.parameters[-1] == {"gallery_path": "/data/people.json"}
    det, rec = plan({"compressed": "true", "device": "cuda", "backend": "torch",
                     "params_file": "/etc/robot/faces.yaml"})
    assert det.parameters[1:] == ["/etc/robot/faces.yaml", {
        "device": "cuda", "backend": "torch", "image_transport": "compressed"}]
    assert rec.parameters[1] == "/etc/robot/faces.yaml"
    (det,) = plan({"compressed": "false"}, ("face_detector",))
    assert det.parameters[-1] == {"image_transport": "raw"}
    with pytest.raises(ValueError, match=r"device must be one of \['cpu', 'cuda'\]"):
        plan({"device": "gpu"})
    with pytest.raises(ValueError, match="compressed must be true or false"):
        plan({"compressed": "maybe"})
    with pytest.raises(ValueError, match="unknown launch arguments"):
        plan({"imagetopic": "/x"})


def plan_ros_args(node_plan, tmp_path: Path, namespace: str) -> list[str]:
    """A plan's parameter layers as node arguments, in order, as launch_ros passes them: one
    params file per entry, a dict written to a YAML under the node's full name. A last layer
    keeps the node unconfigured (its parameters are what is checked, not its model)."""
    fqn = f"{namespace}/{node_plan.name}"
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    for i, layer in enumerate([*node_plan.parameters, {"autostart": False}]):
        if isinstance(layer, dict):
            path = tmp_path / f"{namespace.strip('/')}_{i}.yaml"
            path.write_text(yaml.safe_dump({fqn: {"ros__parameters": layer}}))
            layer = path
        args += ["--params-file", str(layer)]
    return args


def test_params_file_values_win_over_launch_defaults_and_set_arguments_win_over_the_file(
        ros, tmp_path):
    """Issue 18: launch defaults used to be applied after the user's params file."""
    user = write_params(tmp_path / "robot.yaml", "face_detector", {
        "device": "cuda", "backend": "torch", "image_transport": "compressed",
        "score_threshold": 0.7})
    cases = {  # launch arguments -> what the node must end up with
        "file_only": ({"params_file": str(user)},
                      {"device": "cuda", "backend": "torch", "image_transport": "compressed",
                       "score_threshold": 0.7}),
        "file_and_args": ({"params_file": str(user), "backend": "onnx", "compressed": "false"},
                          {"device": "cuda", "backend": "onnx", "image_transport": "raw",
                           "score_threshold": 0.7}),
        "no_file": ({}, {"device": "cpu", "backend": "onnx", "image_transport": "raw",
                         "score_threshold": -1.0}),  # -1: the backbone's own
    }
    procs = {}
    try:
        for case, (args, _) in cases.items():
            (det,) = plan(args, ("face_detector",))
            ns = unique_ns(f"/layers_{case}")
            procs[case] = (ns, start("face_detector", tmp_path,
                                     plan_ros_args(det, tmp_path, ns), tag=f"_{case}"))
        for case, (_, want) in cases.items():
            ns, proc = procs[case]
            got = get_params(ros, f"{ns}/face_detector", sorted(want))
            assert got == want, (case, proc.output())
    finally:
        for _, proc in procs.values():
            assert proc.stop() in (0, -2), proc.output()


@pytest.mark.needs_ros_distro
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_builds_a_description_with_the_real_launch_packages(path):
    import launch_ros  # noqa: F401 - part of what a ROS 2 distribution must provide

    import launch

    # The repo's own launch/ folder is importable as a namespace package named "launch" when
    # the repository root is on sys.path: only the real package has LaunchDescription.
    assert hasattr(launch, "LaunchDescription"), f"not ROS 2 launch: {launch.__path__}"
    module = load_launch_file(path)
    description = module.generate_launch_description()
    assert isinstance(description, launch.LaunchDescription)
    declared = {a.name: a for a in description.get_launch_arguments()}
    assert set(declared) == set(module.USED)
    for name, action in declared.items():
        assert action.description == ARGUMENTS[name][1]
    context = launch.LaunchContext()
    for name in module.USED:
        context.launch_configurations[name] = ARGUMENTS[name][0]
    nodes = [a for e in description.entities if isinstance(e, launch.actions.OpaqueFunction)
             for a in e.execute(context) or ()]
    assert [n.node_executable for n in nodes] == [p.executable for p in plan({}, module.NODES)]


# ---- config YAMLs loaded into real nodes ---------------------------------------------------

def yaml_params(name: str) -> dict:
    data = yaml.safe_load((REPO / "config" / f"{name}.yaml").read_text())
    (section,) = data.values()
    return section["ros__parameters"]


@pytest.mark.parametrize("name,specs", [("face_detector", "DETECTOR"),
                                        ("face_recognizer", "RECOGNIZER")])
def test_config_yaml_is_exactly_the_declared_parameters_and_loads_into_the_node(
        ros, name, specs, tmp_path):
    from rcl_interfaces.srv import ListParameters

    from face_perception.ros import params as param_tables
    from test.ros_harness import node_args

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
    try:
        node = f"{ns}/{name}"
        listed = ros.call(ListParameters, f"{node}/list_parameters",
                          ListParameters.Request(), timeout=90).result.names
        assert set(table) <= set(listed), proc.output()
        got = get_params(ros, node, sorted(values))
        for key, want in values.items():
            want = False if key == "autostart" else want
            assert got[key] == (pytest.approx(want) if isinstance(want, float) else want), \
                (key, got[key], want)
        assert proc.alive()
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()
