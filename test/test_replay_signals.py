"""face_perception_replay ends cleanly on SIGINT/SIGTERM wherever it is: waiting for
subscribers or lingering after the last frame (the demo stops it there), no traceback."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from test.proc import hang_guard

pytest.importorskip("rclpy", reason="ROS 2 not installed")

REPO = Path(__file__).resolve().parents[1]


def start_replay(photos, *extra):
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "face_perception.ros.replay", str(photos / "obama.jpg"),
           str(photos / "biden.jpg"), "--topic", "replay_signal_test", "--rate", "0", *extra]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop_and_collect(proc, signum):
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=hang_guard(60))
    return proc.returncode, out, err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_replay_stopped_while_lingering_exits_cleanly(photos, signum):
    proc = start_replay(photos, "--linger", "600")
    try:
        # The line comes after the last publish, just before the linger starts.
        line = proc.stdout.readline()
        assert line == "face_perception_replay: published 2 frames on /replay_signal_test\n"
        code, _, err = stop_and_collect(proc, signum)
    finally:
        proc.kill()
    assert code == 128 + signum, err
    assert "Traceback" not in err and "RCLError" not in err, err
    assert err.strip() == (f"face_perception_replay: stopped by {signum.name} after 2 frames "
                           "on /replay_signal_test")


def test_replay_stopped_while_waiting_for_subscribers_exits_cleanly(photos):
    # Nobody subscribes to this topic: the tool waits until a stop request ends the wait.
    proc = start_replay(photos, "--wait-subscribers", "1", "--wait-timeout", "600")
    try:
        line = proc.stdout.readline()
        assert line == "face_perception_replay: waiting for 1 subscribers on /replay_signal_test\n"
        code, out, err = stop_and_collect(proc, signal.SIGTERM)
    finally:
        proc.kill()
    assert code == 128 + signal.SIGTERM, err
    assert out == "" and "Traceback" not in err, err
    assert err.strip() == ("face_perception_replay: stopped by SIGTERM after 0 frames "
                           "on /replay_signal_test")
