"""End-to-end ROS pipeline benchmark: latency (publish -> output received) and sustained fps.

Real node processes started from their entry points, real DDS on a private domain (loopback),
640x480 bgr8 frames made from the shipped photos with 1 and 5 faces. Configurations:
  detector            face_detector alone; output faces/detections
  detector+recognizer face_detector and face_recognizer as two processes; output faces/identities
  container           both nodes in face_perception_container; output faces/identities
Latency: frames published one at a time (the next after the answer), p50/p95 in ms. Sustained:
frames published at --rate for --seconds; outputs per second (newest-frame-wins drops the rest).
RSS: resident memory of the node process(es) after the run, summed.

    .venv/bin/python benchmarks/pipeline.py [--quick]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))

import cv2
import numpy as np

from face_perception.data.sample_photos import sample_photos_dir as photos_dir
from face_perception.ros.processes import start_entry_point

CONFIGS = {
    "detector": (["face_detector"], "faces/detections"),
    "detector+recognizer": (["face_detector", "face_recognizer"], "faces/identities"),
    "container": (["face_perception_container"], "faces/identities"),
}




def frame_with_faces(n: int) -> np.ndarray:
    """640x480 frame: one letterboxed portrait, or n portraits side by side."""
    folder = photos_dir()
    names = ["obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
    canvas = np.zeros((480, 640, 3), np.uint8)
    if n == 1:
        img = cv2.imread(str(folder / names[0]))
        s = min(640 / img.shape[1], 480 / img.shape[0])
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        y, x = (480 - img.shape[0]) // 2, (640 - img.shape[1]) // 2
        canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
        return canvas
    cols, rows = 3, 2
    cw, ch = 640 // cols, 480 // rows
    for i in range(n):
        img = cv2.imread(str(folder / names[i % len(names)]))
        s = min(cw / img.shape[1], ch / img.shape[0])
        img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        r, c = divmod(i, cols)
        canvas[r * ch:r * ch + img.shape[0], c * cw:c * cw + img.shape[1]] = img
    return canvas


def make_gallery(folder: Path) -> Path:
    from face_perception.detection import Detector
    from face_perception.gallery import Gallery
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.recognition.recognizer import model_id_of

    embedder = Embedder("dlib_resnet")
    rec = Recognizer(embedder, None, detector=Detector())
    g = Gallery(model_id_of(embedder.meta), int(embedder.meta.embedding_size))
    for name, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        img = cv2.imread(str(photos_dir() / photo))
        g.add(name, rec.embed(img, rec.detector.detect(img)))
    return g.save(folder / "people.json")


def start_nodes(executables, ns, params: Path, log_dir: Path):
    """The nodes' installed entry points, as a user starts them."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    return [start_entry_point(exe, ["--ros-args", "-r", f"__ns:={ns}", "--params-file",
                                    str(params)], log_dir / f"{exe}.log", env)
            for exe in executables]


def rss_mib(pid: int) -> float:
    """Resident memory of a node process after the run (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def stop_nodes(procs) -> None:
    for p in procs:
        p.stop(15)


class Bench:
    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("pipeline_bench")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        threading.Thread(target=self.executor.spin, daemon=True).start()

    def run(self, ns: str, output: str, subscribers: int, frames: dict, args) -> list:
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = self.node.create_publisher(Image, f"{ns}/image", qos)
        arrivals: dict[int, float] = {}
        lock = threading.Lock()

        def got(msg):
            with lock:
                arrivals.setdefault(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                                    time.perf_counter())
        sub = self.node.create_subscription(Detection2DArray, f"{ns}/{output}", got, qos)
        deadline = time.monotonic() + 120
        while pub.get_subscription_count() < subscribers or sub.get_publisher_count() < 1:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nodes in {ns} did not come up (see logs)")
            time.sleep(0.1)
        stamp = [10**12]

        def publish(img):
            stamp[0] += 10**6
            msg = Image(height=480, width=640, encoding="bgr8", step=1920)
            msg.header.frame_id = "camera"
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp[0], 10**9)
            msg.data = img.tobytes()
            t = time.perf_counter()
            pub.publish(msg)
            return stamp[0], t

        rows = []
        for faces, img in frames.items():
            for _ in range(3):  # warm-up, and the pipeline's first-call costs
                s, _ = publish(img)
                self._wait(arrivals, lock, s, 30)
            lat = []
            for _ in range(args.latency_frames):
                s, t = publish(img)
                if self._wait(arrivals, lock, s, 10):
                    lat.append((arrivals[s] - t) * 1000)
            sent = []
            period = 1.0 / args.rate
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.seconds:
                sent.append(publish(img)[0])
                time.sleep(max(0.0, t0 + len(sent) * period - time.perf_counter()))
            time.sleep(1.0)
            with lock:
                answered = [arrivals[s] for s in sent if s in arrivals]
            span = max(answered) - t0 if answered else float("nan")
            rows.append({"faces": faces, "p50": statistics.median(lat) if lat else float("nan"),
                         "p95": float(np.percentile(lat, 95)) if lat else float("nan"),
                         "fps": len(answered) / span if answered else 0.0,
                         "answered": f"{len(answered)}/{len(sent)}"})
        self.node.destroy_publisher(pub)
        self.node.destroy_subscription(sub)
        return rows

    @staticmethod
    def _wait(arrivals, lock, stamp, timeout) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with lock:
                if stamp in arrivals:
                    return True
            time.sleep(0.001)
        return False

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer frames (about a minute)")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--rate", type=float, default=30.0, help="publish rate for sustained fps")
    args = p.parse_args()
    args.latency_frames = 10 if args.quick else 40
    args.seconds = 3.0 if args.quick else 10.0
    from face_perception.ros.transport import apply_profile
    apply_profile("default")  # this process publishes 900 KB frames
    work = Path(tempfile.mkdtemp(prefix="pipeline_bench_"))
    gallery = make_gallery(work)
    params = work / "params.yaml"
    params.write_text("/**:\n  ros__parameters:\n    qos_reliability: reliable\n"
                      f"    publish_annotated: false\n    gallery_path: \"{gallery}\"\n")
    frames = {1: frame_with_faces(1), 5: frame_with_faces(5)}
    bench = Bench()
    results = {}
    try:
        for i, name in enumerate(args.configs):
            executables, output = CONFIGS[name]
            ns = f"/bench{i}"
            log_dir = work / name.replace("+", "_")
            log_dir.mkdir()
            procs = start_nodes(executables, ns, params, log_dir)
            try:
                subs = 1 if name == "detector" else 2
                results[name] = bench.run(ns, output, subs, frames, args)
                rss = sum(rss_mib(p.pid) for p in procs)
                for row in results[name]:
                    row["rss"] = rss
            finally:
                stop_nodes(procs)
    finally:
        bench.close()
    print(f"\nROS pipeline, 640x480 bgr8, reliable QoS, {os.cpu_count()} CPUs, "
          f"sustained publish rate {args.rate:g} Hz{' (quick)' if args.quick else ''}")
    print(f"{'configuration':<22}{'faces':>6}{'p50 ms':>9}{'p95 ms':>9}{'fps':>8}"
          f"{'answered':>11}{'p50 vs detector':>17}{'RSS MiB':>9}")
    base = {r["faces"]: r["p50"] for r in results.get("detector", [])}
    for name, rows in results.items():
        for r in rows:
            ratio = r["p50"] / base[r["faces"]] if r["faces"] in base else float("nan")
            print(f"{name:<22}{r['faces']:>6}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['fps']:>8.1f}"
                  f"{r['answered']:>11}{ratio:>16.2f}x{r['rss']:>9.0f}")
    print(f"logs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
