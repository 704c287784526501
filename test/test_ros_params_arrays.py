"""Array parameters: every array type is accepted as rclpy hands it over (array.array or list),
at start-up (declare) and at run time (a real set_parameters service call on a running node)."""
from __future__ import annotations

import array
import time

import pytest

from test.proc import hang_guard

pytest.importorskip("rclpy", reason="ROS 2 not installed")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rcl_interfaces.srv import GetParameters, SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from face_perception.ros.params import DETECTOR, ParamSpec, declare  # noqa: E402

ARRAY_SPECS = {
    "doubles": ParamSpec("doubles", [1.0], "Doubles.", low=0.1, high=4.0),
    "integers": ParamSpec("integers", [1, 2], "Integers.", low=0, high=10),
    "strings": ParamSpec("strings", ["a"], "Strings.", choices=("a", "b")),
    "booleans": ParamSpec("booleans", [True], "Booleans."),
    "empty_strings": ParamSpec("empty_strings", [], "Strings.", item_type=str),
}
GOOD = {"doubles": [0.5, 1.0], "integers": [3, 4, 5], "strings": ["b", "a"],
        "booleans": [False, True], "empty_strings": ["x"]}


def as_rclpy_hands_it_over(name, value):
    """The value a node's callback receives for ``value`` sent over the parameter service."""
    return Parameter.from_parameter_msg(Parameter(name, value=value).to_parameter_msg()).value


def test_every_array_type_passes_in_the_form_rclpy_delivers_it():
    assert isinstance(as_rclpy_hands_it_over("d", [0.5]), array.array)  # the case of issue 18
    for name, value in GOOD.items():
        spec = ARRAY_SPECS[name]
        delivered = as_rclpy_hands_it_over(name, value)
        assert spec.check(delivered) is None, (name, delivered)
        kept = spec.normalize(delivered)
        assert kept == value and type(kept) is list, (name, kept)
        assert all(type(v) is spec.items for v in kept)
    types = {name: spec.descriptor().type for name, spec in ARRAY_SPECS.items()}
    assert types == {"doubles": ParameterType.PARAMETER_DOUBLE_ARRAY,
                     "integers": ParameterType.PARAMETER_INTEGER_ARRAY,
                     "strings": ParameterType.PARAMETER_STRING_ARRAY,
                     "booleans": ParameterType.PARAMETER_BOOL_ARRAY,
                     "empty_strings": ParameterType.PARAMETER_STRING_ARRAY}


def test_array_rejections_name_the_parameter_and_the_value():
    spec = ARRAY_SPECS
    assert spec["doubles"].check(array.array("d", [0.05])) == \
        "doubles must be in [0.1, 4.0], got 0.05"
    assert "finite" in spec["doubles"].check(array.array("d", [float("nan")]))
    assert spec["doubles"].check([True]) == "doubles must be a list of numbers, got [True]"
    assert spec["integers"].check([1.5]) == "integers must be a list of integers, got [1.5]"
    assert spec["integers"].check(array.array("q", [11])) == \
        "integers must be in [0, 10], got 11"
    assert spec["strings"].check(["c"]) == "strings must be one of ['a', 'b'], got 'c'"
    assert spec["booleans"].check([1]) == "booleans must be a list of booleans, got [1]"
    assert spec["doubles"].check("0.5") == "doubles must be a list of numbers, got str '0.5'"
    with pytest.raises(TypeError, match="item_type"):
        ParamSpec("x", [], "No item type.")


def test_declare_accepts_every_array_type_from_overrides(ros_context):
    overrides = [Parameter(name, value=value) for name, value in GOOD.items()]
    node = Node("array_params", context=ros_context, parameter_overrides=overrides)
    try:
        values = declare(node, list(ARRAY_SPECS.values()))
        assert values == GOOD
        defaults = declare(Node("array_defaults", context=ros_context),
                           list(ARRAY_SPECS.values()))
        assert defaults == {name: spec.default for name, spec in ARRAY_SPECS.items()}
    finally:
        node.destroy_node()


def _until(executor, condition, what, timeout=60.0):
    deadline = time.monotonic() + hang_guard(timeout)
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        executor.spin_once(timeout_sec=0.1)


def test_running_detector_accepts_scales_set_over_the_parameter_service(ros_context):
    from face_perception.ros.detector_node import DetectorNode

    detector = DetectorNode(context=ros_context,
                            parameter_overrides=[Parameter("scales", value=[1.0, 2.0])])
    client_node = Node("param_client", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(detector)
    executor.add_node(client_node)
    try:
        assert detector.values["scales"] == [1.0, 2.0]
        _until(executor, lambda: detector.state == "active", "the detector to activate")
        setter = client_node.create_client(SetParameters, "/face_detector/set_parameters")
        getter = client_node.create_client(GetParameters, "/face_detector/get_parameters")
        _until(executor, lambda: setter.service_is_ready() and getter.service_is_ready(),
               "the parameter services")

        def call(client, request):
            future = client.call_async(request)
            _until(executor, future.done, "a parameter service answer")
            return future.result()

        good = Parameter("scales", value=[0.5, 1.0]).to_parameter_msg()
        (result,) = call(setter, SetParameters.Request(parameters=[good])).results
        assert result.successful, result.reason
        assert detector.values["scales"] == [0.5, 1.0]
        assert detector.model.scales == [0.5, 1.0]
        got = call(getter, GetParameters.Request(names=["scales"])).values[0]
        assert list(got.double_array_value) == [0.5, 1.0]

        bad = Parameter("scales", value=[0.5, 9.0]).to_parameter_msg()
        (result,) = call(setter, SetParameters.Request(parameters=[bad])).results
        assert not result.successful
        assert result.reason == "scales must be in [0.1, 4.0], got 9.0"
        assert detector.values["scales"] == [0.5, 1.0]
        assert [s.name for s in DETECTOR if s.kind is list] == ["scales"]
    finally:
        executor.shutdown()
        detector.destroy_node()
        client_node.destroy_node()



def test_invalid_overrides_become_problems_and_integers_become_doubles(ros_context):
    from face_perception.ros.params import declare_checked

    specs = [ParamSpec("threshold", 0.5, "A double.", low=0.0, high=1.0),
             ParamSpec("doubles", [1.0], "Doubles.", low=0.1, high=4.0, min_items=1),
             ParamSpec("mode", "a", "A choice.", choices=("a", "b")),
             ParamSpec("label", "x", "A name.", nonempty=True)]
    overrides = [Parameter("threshold", value=1), Parameter("doubles", value=[2, 3]),
                 Parameter("mode", value=7), Parameter("label", value="")]
    node = Node("checked_params", context=ros_context, parameter_overrides=overrides)
    try:
        values, problems = declare_checked(node, specs)  # never raises
        assert values == {"threshold": 1.0, "doubles": [2.0, 3.0], "mode": "a", "label": "x"}
        assert type(values["threshold"]) is float
        assert node.get_parameter("threshold").value == 1.0
        assert problems == {"mode": "mode must be str, got int 7",
                            "label": "label must not be empty or blank, got ''"}
        # run time: the same coercion before rclpy's type check
        (result,) = node.set_parameters([Parameter("threshold", value=0)])
        assert result.successful and node.get_parameter("threshold").value == 0.0
        (result,) = node.set_parameters([Parameter("doubles", value=[1, 2])])
        assert result.successful and list(node.get_parameter("doubles").value) == [1.0, 2.0]
    finally:
        node.destroy_node()
