"""Child processes for integration tests: this checkout's code, the run's private DDS world."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Optional

from face_perception.ros.processes import Process, start_entry_point

REPO = Path(__file__).resolve().parents[1]


def child_env(extra: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment for a child of this venv: same DDS world, THIS checkout importable first
    (the venv's editable install may point at another checkout)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


class Proc(Process):
    """A Process with the test environment, started in the repository."""

    def __init__(self, args: list[str], log_path: Path, env: Optional[dict[str, str]] = None):
        super().__init__(args, log_path, child_env(env), cwd=REPO)


def python_proc(code_or_args: list[str], log_path: Path, env=None) -> Proc:
    return Proc([sys.executable, *code_or_args], log_path, env)


def entry_proc(name: str, args: list[str], log_path: Path, env=None) -> Process:
    """An installed entry point (face_detector, ...) as the tests' child process."""
    return start_entry_point(name, args, log_path, child_env(env), cwd=REPO)


# Every wait of the tests is a hang guard, never a speed budget: the timeouts written in the tests
# are what an idle machine needs many times over, and are stretched further by this factor so that a
# shared CI machine with both cores busy never reaches them (FACE_PERCEPTION_HANG_GUARD_SCALE).
HANG_GUARD_SCALE = float(os.environ.get("FACE_PERCEPTION_HANG_GUARD_SCALE", "5"))


def hang_guard(timeout: float) -> float:
    """Seconds a wait may last before the run counts as hung: ``timeout`` x HANG_GUARD_SCALE."""
    return float(timeout) * HANG_GUARD_SCALE


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true; ``timeout`` only bounds a broken run, it is no assertion
    (stretched by ``hang_guard``)."""
    deadline = time.monotonic() + hang_guard(timeout)
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
