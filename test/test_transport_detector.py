"""End to end over real DDS with the face_detector node (started from its entry point).

Default suite: a 30 Hz stamp grid that leaves out every third frame, published reliably one frame
at a time, is reported by the node (~/get_stats) with the exact received and missing counts and
ratio, and the node warns about it in its log pointing at docs/transport.md.
Opt-in (`make test-realtime`, marker ``realtime``): camera-sized frames from a publisher process
that loads the shipped profile, best-effort at 30 Hz, each get a Detection2DArray.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from face_perception.messages.stamps import stamp_to_ns
from face_perception.ros.transport import profile_env
from test.proc import python_proc
from test.ros_harness import (
    frames_from,
    image_msg,
    lock_step,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
)

SECONDS = 3.0
RATE = 30.0
WARMUP = 15  # frames sent before the measured ones (model warm-up)


class DetectorRun:
    """A detector process in its own namespace, and the test's listener for its outputs."""

    def __init__(self, ros, tmp_path: Path, namespace: str, params: dict[str, str]):
        self.ros = ros
        self.ns = namespace
        self.node = f"{namespace}/face_detector"
        self.tmp_path = tmp_path
        ros_args = ["--ros-args", "-r", f"__ns:={namespace}", "-p", "publish_annotated:=false"]
        for key, value in params.items():
            ros_args += ["-p", f"{key}:={value}"]
        self.proc = start("face_detector", tmp_path, ros_args)
        self.outputs = ros.listen(Detection2DArray, f"{namespace}/faces/detections")

    @property
    def detections(self) -> dict[int, Detection2DArray]:
        return {stamp_to_ns(m.header.stamp): m
                for m in list(self.outputs)}

    def wait_active(self, timeout: float = 90.0) -> None:
        ok = until(lambda: self.ros.node.count_subscribers(f"{self.ns}/image") > 0, timeout,
                   self.proc) and self.ros.wait_matched(f"{self.ns}/faces/detections")
        assert ok and self.proc.alive(), f"detector did not become active:\n{self.log()}"

    def publish(self, repo_root: Path, photos: Path, width: int, height: int,
                skip_every: int = 0, warmup_frames: int = 0) -> list[int]:
        """Run the frame publisher (with the shipped profile) to the end; the stamps it sent
        after the warm-up frames."""
        pub = python_proc(
            [str(repo_root / "test/frame_publisher.py"), "--topic", f"{self.ns}/image",
             "--width", str(width), "--height", str(height), "--rate", str(RATE),
             "--seconds", str(SECONDS), "--skip-every", str(skip_every),
             "--warmup-frames", str(warmup_frames), "--photo", str(photos / "obama.jpg")],
            self.tmp_path / "publisher.log", env=profile_env("default"))
        code = pub.wait(90)
        pub.stop()
        out = pub.log_path.read_text(errors="replace")
        sent = [ln for ln in out.splitlines() if ln.startswith("SENT ")]
        assert code == 0 and sent, out
        return json.loads(sent[-1][5:])["stamps"]

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace")

    def close(self) -> None:
        assert self.proc.stop() in (0, -2), self.log()[-3000:]


# The detector has to finish every frame within 33 ms or newest-frame-wins (correctly) skips
# frames, and 99% of 90 frames allows no miss: target_size 320/240 (max_size 640) keeps the model
# input small enough for that on a 2-core machine; the photo's face is still found. The transport
# under test is the same either way. The first frames warm the model up and are not counted.
# qos_depth 5 (the sensor-data profile's depth): with depth 1 the DDS reader overwrites a frame
# whenever the node's executor thread is more than one frame interval late, which a loaded
# machine causes (measured: 84 of 90 frames reached the node at depth 1, 90 of 90 at depth 5).
# Newest-frame-wins still hands only the newest frame to the model, so latency is unchanged.
DEPTH = {"qos_depth": "5", "qos_reliability": "best_effort"}


# Real time: whether a node finishes each frame within 33 ms depends on the machine, so this is
# opt-in (`make test-realtime`); `make test` checks the same path in lock step below.
@pytest.mark.realtime
@pytest.mark.parametrize("width,height,params", [
    (640, 480, {"target_size": "320", "max_size": "640", **DEPTH}),
    (1280, 720, {"target_size": "240", "max_size": "640", **DEPTH}),
])
def test_every_frame_from_a_profiled_publisher_gets_detections(
        ros, tmp_path, repo_root, photos, width, height, params):
    run = DetectorRun(ros, tmp_path, unique_ns(f"/transport_e2e_{width}"), params)
    try:
        run.wait_active()
        sent = run.publish(repo_root, photos, width, height, warmup_frames=WARMUP)
        assert len(sent) == int(SECONDS * RATE)
        until(lambda: set(sent) <= set(run.detections), 5.0)
        stats = ros.stats(run.node)
        answered = [s for s in sent if s in run.detections]
        summary = (f"{width}x{height}: {len(answered)} of {len(sent)} frames answered; node "
                   f"received {stats['received']}, processed {stats['processed']}, skipped_stale "
                   f"{stats['skipped_stale']}, mean_latency_ms {stats['mean_latency_ms']:.1f}")
        print(summary)
        # Transport first (what the profile fixes): the node saw the frames (and the warm-up) ...
        assert stats["received"] >= 0.99 * (len(sent) + WARMUP), \
            summary + "\n" + run.log()[-3000:]
        # ... and the detector answered each of them (fails when it cannot keep up at 30 Hz:
        # then skipped_stale and mean_latency_ms in the message say so).
        assert len(answered) >= 0.99 * len(sent), summary
        for stamp in answered:
            assert run.detections[stamp].header.frame_id == "test_camera"
        # Real detections, not empty arrays: the photo's face is found in (nearly) every frame.
        with_face = sum(1 for s in answered if len(run.detections[s].detections) == 1)
        assert with_face >= 0.95 * len(answered), summary
    finally:
        run.close()


def loss_grid(slots: int, skip_every: int) -> tuple[list[int], int]:
    """Stamps of a RATE grid of ``slots`` frames without every ``skip_every``-th one, and how many
    grid frames are missing between the first and the last sent one."""
    period = round(1e9 / RATE)
    kept = [i for i in range(slots) if i % skip_every != skip_every - 1]
    missing = (kept[-1] - kept[0] + 1) - len(kept)
    return [10**12 + i * period for i in kept], missing


def test_node_reports_exact_upstream_loss_of_a_stamp_grid_missing_every_third_frame(
        ros, tmp_path, photos):
    run = DetectorRun(ros, tmp_path, unique_ns("/transport_loss"),
                      {"qos_reliability": "reliable", "target_size": "320", "max_size": "640"})
    try:
        run.wait_active()
        pub = ros.publisher(Image, f"{run.ns}/image")
        assert wait_for_subscribers(pub, 1, 60)
        frame = frames_from(photos, ["obama.jpg"])[0]
        stamps, missing = loss_grid(int(SECONDS * RATE), 3)
        assert (len(stamps), missing) == (60, 29)
        for stamp in stamps:  # one at a time: each frame is answered before the next goes
            lock_step(pub, run.outputs, image_msg(frame, stamp, "test_camera"), run.proc)
        stats = ros.stats(run.node)
        assert (stats["received"], stats["processed"], stats["skipped_stale"]) == (60, 60, 0)
        assert stats["missing_upstream"] == missing
        assert stats["upstream_loss_ratio"] == pytest.approx(missing / (len(stamps) + missing))
        assert stats["median_interval_ms"] == pytest.approx(1000 / RATE, abs=1e-6)
        # The node also says so in its log (at its next 1 Hz diagnostics), pointing at the docs.
        assert until(lambda: "docs/transport.md" in run.log(), 30, run.proc), run.log()[-3000:]
    finally:
        run.close()
