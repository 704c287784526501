"""Helpers for the ROS node tests: start entry points, listen to topics, call services.

Nodes start from their entry points: under `colcon test` the installed scripts in
`<install>/lib/face_perception/`, otherwise `python -c "from ... import main; main()"` with the
source tree on PYTHONPATH. Everything talks real DDS on the run's private domain.
"""
from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

from test.proc import REPO, Proc, wait_for

ENTRY_POINTS = {
    "face_detector": "face_perception.ros.detector_node",
    "face_recognizer": "face_perception.ros.recognizer_node",
    "face_perception_container": "face_perception.ros.container",
    "face_perception_replay": "face_perception.ros.replay",
}
RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def installed_script(name: str) -> Optional[Path]:
    """The colcon-installed script of ``name`` built from THIS checkout, else None.

    `colcon test` puts the package's install prefix on AMENT_PREFIX_PATH; a prefix is used only
    when it lies inside this source tree (its colcon build) or holds the imported package, so a
    stale install of another checkout is never tested by mistake.
    """
    import face_perception

    here = Path(face_perception.__file__).resolve()
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        root = Path(prefix).resolve()
        script = root / "lib" / "face_perception" / name
        if script.is_file() and (REPO in root.parents or root in here.parents):
            return script
    return None


def entry_command(name: str, args: list[str]) -> list[str]:
    script = installed_script(name)
    if script is not None:
        return [sys.executable, str(script), *args]
    code = f"import sys; from {ENTRY_POINTS[name]} import main; sys.exit(main())"
    return [sys.executable, "-c", code, *args]


def start(name: str, log_dir: Path, args: list[str] = (), env=None, tag: str = "") -> Proc:
    """Start an entry point as its own process (output in ``log_dir/<name><tag>.log``)."""
    return Proc(entry_command(name, list(args)), Path(log_dir) / f"{name}{tag}.log", env)


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

    def publisher(self, msg_type, topic: str, qos=RELIABLE):
        return self.node.create_publisher(msg_type, topic, qos)

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available after {timeout} s")
            future = client.call_async(request)
            if not wait_for(future.done, timeout):
                raise TimeoutError(f"service {name} did not answer in {timeout} s")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()


def wait_for_subscribers(pub, count: int = 1, timeout: float = 60.0) -> bool:
    return wait_for(lambda: pub.get_subscription_count() >= count, timeout)


def diagnostics_of(messages: list, node_fqn: str) -> Optional[dict]:
    """Key-values of the newest /diagnostics status of ``node_fqn`` (None if none yet)."""
    for arr in reversed(list(messages)):
        for status in arr.status:
            if status.name == f"{node_fqn}: frames":
                return {kv.key: kv.value for kv in status.values}
    return None


def rss_kib(pid: int) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1))


def until(predicate: Callable[[], bool], timeout: float, proc: Optional[Proc] = None) -> bool:
    """wait_for that gives up early when ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc is not None and not proc.alive():
            return bool(predicate())
        time.sleep(0.05)
    return bool(predicate())
