"""Helpers for the ROS node tests: start entry points, listen to topics, call services.

Nodes start from their installed entry points (``<venv>/bin/face_detector`` ...), with this
checkout first on PYTHONPATH. Everything talks real DDS on the run's private domain, in lock step:
the next input only after the answer to the previous one, statistics from the node's
``~/get_stats`` service after the event they count.
"""
from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import rclpy
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import GetParameters, SetParameters, SetParametersAtomically
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from face_perception.ros.processes import Process
from test.proc import entry_proc, hang_guard, wait_for

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def start(name: str, log_dir: Path, args: list[str] = (), env=None, tag: str = "") -> Process:
    """Start an entry point as its own process (output in ``log_dir/<name><tag>.log``)."""
    return entry_proc(name, list(args), Path(log_dir) / f"{name}{tag}.log", env)


def unique_ns(base: str) -> str:
    """A namespace of this test run only: concurrent runs on one DDS domain cannot cross-talk."""
    return f"{base}_{os.getpid()}"


def node_args(namespace: str, params_file: Optional[Path] = None, extra=()) -> list[str]:
    args = ["--ros-args", "-r", f"__ns:={namespace}"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    return args + list(extra)


def write_params(path: Path, node: str, values: dict) -> Path:
    """A ROS 2 params YAML for one node name (any namespace)."""
    lines = ["/**:" if node == "*" else f"/**/{node}:", "  ros__parameters:"]
    for key, value in values.items():
        lines.append(f"    {key}: {_yaml(value)}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _yaml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    return repr(value)


class Listener:
    """A node in the test process, spun in a background thread, that records messages."""

    def __init__(self, name: str = "test_listener"):
        self.node = rclpy.create_node(name)
        self.messages: dict[str, list] = {}
        self.subscriptions: dict[str, object] = {}
        self._lock = threading.Lock()
        self._clients: dict = {}
        self._kept: list = []  # entities destroyed at close, once the executor has stopped
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def listen(self, msg_type, topic: str, qos=RELIABLE) -> list:
        store = self.messages.setdefault(topic, [])

        def keep(msg):
            with self._lock:
                store.append(msg)
        self.subscriptions[topic] = self.node.create_subscription(msg_type, topic, keep, qos)
        return store

    def wait_matched(self, topic: str, publishers: int = 1, timeout: float = 60.0) -> bool:
        """Wait until the subscription on ``topic`` matched this many publishers.

        Outputs are published once per frame: a reader that matches the writer only after the
        frame was answered never sees it (volatile durability), so tests wait for this first.
        """
        sub = self.subscriptions[topic]
        return wait_for(lambda: sub.get_publisher_count() >= publishers, timeout)

    def wait_connected(self, *nodes: str, timeout: float = 60.0) -> bool:
        """Until every DDS link into and out of these nodes is matched at both ends: each input
        of each node has matched a publisher, and each output topic this listener or another of
        ``nodes`` reads has matched that many readers (``~/get_stats``: ``input_publishers``,
        ``output_subscribers``).

        Both ends, because a sample a writer sends before it matched a volatile reader never
        reaches that reader, and a reader drops samples of a writer it has not matched yet:
        lock step over a link matched at one end only waits forever for a lost first frame.
        """
        def connected() -> bool:
            stats = {node: self.stats(node) for node in nodes}
            readers: dict[str, int] = {topic: 1 for topic in self.subscriptions}
            for values in stats.values():
                for topic in values.get("inputs", []):
                    readers[topic] = readers.get(topic, 0) + 1
            for values in stats.values():
                if not all(n >= 1 for n in values.get("input_publishers", [])):
                    return False
                for topic, matched in values.get("output_subscribers", {}).items():
                    if matched < readers.get(topic, 0):
                        return False
            return True
        return wait_for(connected, timeout, interval=0.2)

    def publisher(self, msg_type, topic: str, qos=RELIABLE):
        return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """One service call. The client is kept for the rest of the module (its DDS endpoints are
        discovered once).

        A service's answer can be lost in transit: rmw_fastrtps drops a response when the server
        has not yet discovered the client's response reader 100 ms after the request ("client
        will not receive response"), which happens on a loaded machine, mostly to a client made
        just before. A question that may be asked twice (reads: get_state, get_parameters,
        get_stats, ...) is asked again when no answer came within ``RESEND_AFTER`` s; the first
        answer wins. A lifecycle transition is asked again only when get_state shows the node still
        at rest in the state it was in before the request.
        Anything else is asked once.
        """
        client = self._client(srv_type, name)
        if not client.wait_for_service(timeout_sec=hang_guard(timeout)):
            raise TimeoutError(f"service {name} not available after {timeout} s")
        before = self._state(name) if srv_type is ChangeState else None
        futures = [client.call_async(request)]
        deadline = time.monotonic() + hang_guard(timeout)
        while time.monotonic() < deadline:
            done = _first_done(futures, min(RESEND_AFTER, deadline - time.monotonic()))
            if done is not None:
                return done.result()
            if srv_type is ChangeState:
                now = self._state(name)
                if now != before and now == TRANSITION_GOAL.get(
                        request.transition.id or request.transition.label):
                    return ChangeState.Response(success=True)  # done; its answer was lost
                if now != before or now not in PRIMARY_STATES:
                    continue  # mid-transition, or moved on: its answer is on the way
            elif not _safe_to_repeat(srv_type, name):
                continue
            futures.append(client.call_async(request))
        raise TimeoutError(f"service {name} did not answer in {timeout} s")

    def _client(self, srv_type, name: str):
        key = (srv_type, name)
        if key not in self._clients:
            self._clients[key] = self.node.create_client(srv_type, name)
        return self._clients[key]

    def _state(self, change_state: str) -> str:
        node = change_state.rsplit("/", 1)[0]
        return self.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label

    def stats(self, node_fqn: str) -> dict:
        """The node's counters from its ~/get_stats service (answered after this call)."""
        from std_srvs.srv import Trigger

        res = self.call(Trigger, f"{node_fqn}/get_stats", Trigger.Request())
        assert res.success, res.message
        return json.loads(res.message)

    def keep_until_close(self, entity):
        """An entity (an ActionClient, ...) to destroy only after the executor stopped: rclpy's
        multi-threaded executor dies when an action client is destroyed while it spins ("action
        client pointer is invalid" in its wait set)."""
        self._kept.append(entity)
        return entity

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        for entity in self._kept:
            entity.destroy()
        for client in self._clients.values():
            self.node.destroy_client(client)
        self.node.destroy_node()


# Seconds without an answer after which a repeatable question is asked again (scaled like every
# wait: no answer this late on an honest run means the answer was lost, not slow).
RESEND_AFTER = hang_guard(5.0)
# Questions that change nothing: asking twice is harmless.
_READS = {"GetState", "GetAvailableTransitions", "GetParameters", "ListParameters",
          "DescribeParameters", "GetParameterTypes", "ListIdentities"}
PRIMARY_STATES = {"unconfigured", "inactive", "active", "finalized"}
# The state a lifecycle transition ends in, by id and by label (lifecycle_msgs/Transition).
TRANSITION_GOAL = {1: "inactive", "configure": "inactive", 2: "unconfigured",
                   "cleanup": "unconfigured", 3: "active", "activate": "active",
                   4: "inactive", "deactivate": "inactive", 5: "finalized", 6: "finalized",
                   7: "finalized", "shutdown": "finalized"}


def _safe_to_repeat(srv_type, name: str) -> bool:
    return srv_type.__name__ in _READS or name.endswith("/get_stats")


def _first_done(futures, seconds: float):
    deadline = time.monotonic() + max(seconds, 0.0)
    while True:
        for future in futures:
            if future.done():
                return future
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.02)


def wait_for_subscribers(pub, count: int = 1, timeout: float = 60.0) -> bool:
    return wait_for(lambda: pub.get_subscription_count() >= count, timeout)


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def until(predicate: Callable[[], bool], timeout: float, proc: Optional[Process] = None) -> bool:
    """wait_for that gives up early when ``proc`` died."""
    deadline = time.monotonic() + hang_guard(timeout)
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and not proc.alive():
            return bool(predicate())
        time.sleep(0.05)
    return bool(predicate())


# ---- messages ------------------------------------------------------------------------------

def fit_640x480(img: np.ndarray) -> np.ndarray:
    """A photo letterboxed into a 640x480 camera-sized frame."""
    scale = min(640 / img.shape[1], 480 / img.shape[0])
    small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas = np.zeros((480, 640, 3), np.uint8)
    y, x = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
    canvas[y:y + small.shape[0], x:x + small.shape[1]] = small
    return canvas


def frames_from(photos: Path, names) -> list[np.ndarray]:
    return [fit_640x480(cv2.imread(str(photos / n))) for n in names]


def image_msg(img: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Image:
    msg = Image(height=img.shape[0], width=img.shape[1], encoding="bgr8", step=img.shape[1] * 3)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
    msg.data = img.tobytes()
    return msg


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def answered(messages: list, stamp: int) -> list:
    """The outputs in ``messages`` whose header stamp is ``stamp``."""
    return [m for m in list(messages) if stamp_ns(m.header) == stamp]


# ---- parameters ----------------------------------------------------------------------------

def set_params(ros: Listener, node: str, atomically: bool = False, **values) -> list:
    """SetParameters(Atomically) on ``node``; the results."""
    srv = SetParametersAtomically if atomically else SetParameters
    req = srv.Request()
    for name, value in values.items():
        pv = ParameterValue()
        if isinstance(value, bool):
            pv.type, pv.bool_value = ParameterType.PARAMETER_BOOL, value
        elif isinstance(value, float):
            pv.type, pv.double_value = ParameterType.PARAMETER_DOUBLE, value
        elif isinstance(value, int):
            pv.type, pv.integer_value = ParameterType.PARAMETER_INTEGER, value
        else:
            pv.type, pv.string_value = ParameterType.PARAMETER_STRING, value
        req.parameters.append(Parameter(name=name, value=pv))
    if atomically:
        return [ros.call(srv, f"{node}/set_parameters_atomically", req).result]
    return ros.call(srv, f"{node}/set_parameters", req).results


def param_value(pv):
    """A ParameterValue as a Python value."""
    return {ParameterType.PARAMETER_BOOL: lambda: pv.bool_value,
            ParameterType.PARAMETER_INTEGER: lambda: pv.integer_value,
            ParameterType.PARAMETER_DOUBLE: lambda: pv.double_value,
            ParameterType.PARAMETER_STRING: lambda: pv.string_value,
            ParameterType.PARAMETER_DOUBLE_ARRAY: lambda: list(pv.double_array_value)}[pv.type]()


def get_params(ros: Listener, node: str, names: list[str]) -> dict:
    values = ros.call(GetParameters, f"{node}/get_parameters",
                      GetParameters.Request(names=list(names))).values
    return {name: param_value(pv) for name, pv in zip(names, values)}


def lock_step(pub, outputs: list, msg, proc: Optional[Process] = None, timeout: float = 60.0):
    """Publish ``msg`` and wait for the output with its stamp (the next frame goes only after
    this one was answered, so the node's newest-frame-wins never drops a frame)."""
    stamp = stamp_ns(msg.header)
    pub.publish(msg)
    ok = until(lambda: answered(outputs, stamp), timeout, proc)
    assert ok, f"no answer for stamp {stamp}" + (f":\n{proc.output()[-3000:]}" if proc else "")
    return answered(outputs, stamp)[0]


def wait_stat(ros: Listener, node: str, key: str, value, proc: Optional[Process] = None,
              timeout: float = 60.0) -> dict:
    """Poll ``node``'s ~/get_stats until ``key`` equals ``value``; the stats."""
    seen = {}

    def reached() -> bool:
        seen.update(ros.stats(node))
        return seen[key] == value
    assert until(reached, timeout, proc), (key, value, seen,
                                           proc.output()[-3000:] if proc else "")
    return seen
