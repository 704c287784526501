"""Start the package's installed entry points as child processes (tests, benchmarks, the demo).

One way to start a node everywhere: the console script that `pip install -e .` put next to the
running interpreter (``<venv>/bin/face_detector``), the same command a user runs.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence


class EntryPointMissing(FileNotFoundError):
    """The console script is not installed next to this interpreter."""


def entry_point(name: str) -> Path:
    """Path of the installed console script ``name`` of this interpreter's environment."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        raise EntryPointMissing(
            f"entry point {name!r} not found at {path}: install the package into this "
            f"environment first (`make setup`, or `{sys.executable} -m pip install -e .` in the "
            f"repository)")
    return path


class Process:
    """A child process in its own session, output in ``log_path``; stopped with SIGINT."""

    def __init__(self, args: Sequence[str], log_path: Path,
                 env: Optional[Mapping[str, str]] = None, cwd: Optional[Path] = None):
        self.args = [str(a) for a in args]
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(self.args, stdout=self._log, stderr=subprocess.STDOUT,
                                      env=dict(env) if env is not None else None,
                                      cwd=str(cwd) if cwd else None, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait(self, timeout: float) -> Optional[int]:
        """The exit code once the process ended by itself within ``timeout``, else None."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT to the process group (rclpy shuts down cleanly), SIGKILL after ``timeout``."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def start_entry_point(name: str, args: Sequence[str], log_path: Path,
                      env: Optional[Mapping[str, str]] = None,
                      cwd: Optional[Path] = None) -> Process:
    """Run console script ``name`` with ``args`` (e.g. ``--ros-args ...``) as a Process."""
    return Process([str(entry_point(name)), *args], log_path, env, cwd)
