"""End-to-end ROS pipeline benchmark as a camera driver sees it: frames answered, latency, CPU.

A separate publisher process (best effort, the shipped shared-memory DDS profile, like a camera
driver) sends real photos letterboxed to the frame size at 30 Hz for --seconds, stamped with the
wall clock at publish time; the real node processes (started from their entry points, private
DDS domain on loopback) answer on faces/identities (faces/detections for the detector alone);
this process only listens. Per configuration, frame size and face count it reports: frames
answered of frames sent, latency publish -> answer (p50/p95 over the answered frames), CPU
milliseconds the node processes spent per answered frame, and the load average at the start
(the machine may be shared). Configurations:
  detector            face_detector alone
  detector+recognizer face_detector and face_recognizer as two processes
  container           both nodes in face_perception_container

    .venv/bin/python benchmarks/pipeline.py                 # 3 sizes x 1/5 faces, 120 s each
    .venv/bin/python benchmarks/pipeline.py --quick         # 640x480 and 1280x720, 1 face, 10 s
    .venv/bin/python benchmarks/pipeline.py --max-size 1280 --num-threads -1   # before issue 15
    .venv/bin/python benchmarks/pipeline.py --backbone yunet --sizes 1920x1080 --faces 1
    .venv/bin/python benchmarks/pipeline.py --busy-core off on --spin off on   # thread policy
    .venv/bin/python benchmarks/pipeline.py --profile    # CPU ms of each step, no DDS

--busy-core on keeps one core busy with another process (``sh -c 'while :; do :; done'`` at nice
0) during the case, as a robot's other software would; --spin on sets FACE_PERCEPTION_ORT_SPIN=1
in the nodes (onnxruntime pool threads busy-wait, the opposite of the package's policy).
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
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

CONFIGS = {
    "detector": (["face_detector"], "faces/detections"),
    "detector+recognizer": (["face_detector", "face_recognizer"], "faces/identities"),
    "container": (["face_perception_container"], "faces/identities"),
}
PORTRAITS = ["obama.jpg", "biden.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]


def letterbox(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """``img`` scaled to fit ``width`` x ``height``, centred on black (a camera-like frame)."""
    s = min(width / img.shape[1], height / img.shape[0])
    img = cv2.resize(img, (max(1, int(img.shape[1] * s)), max(1, int(img.shape[0] * s))),
                     interpolation=cv2.INTER_AREA)
    canvas = np.zeros((height, width, 3), np.uint8)
    y, x = (height - img.shape[0]) // 2, (width - img.shape[1]) // 2
    canvas[y:y + img.shape[0], x:x + img.shape[1]] = img
    return canvas


def frame_with_faces(n: int, width: int, height: int) -> np.ndarray:
    """One letterboxed portrait, or ``n`` portraits letterboxed into a 3 x 2 grid of cells."""
    folder = photos_dir()
    if n == 1:
        return letterbox(cv2.imread(str(folder / PORTRAITS[0])), width, height)
    cols, rows = 3, 2
    cw, ch = width // cols, height // rows
    canvas = np.zeros((height, width, 3), np.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = letterbox(
            cv2.imread(str(folder / PORTRAITS[i % len(PORTRAITS)])), cw, ch)
    return canvas


# ---------------------------------------------------------------------- publisher process
def publish(args) -> int:
    """The camera: best effort, the shipped DDS profile, frames at --rate for --seconds."""
    from face_perception.ros.transport import apply_profile

    apply_profile("default", override=True)
    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    width, height = (int(v) for v in args.publish.split("x"))
    frame = frame_with_faces(args.faces, width, height).tobytes()
    rclpy.init()
    node = rclpy.create_node("camera_bench")
    pub = node.create_publisher(Image, f"{args.ns}/image", qos_profile_sensor_data)
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() < args.subscribers and time.monotonic() < deadline:
        time.sleep(0.05)
    msg = Image(height=height, width=width, encoding="bgr8", step=width * 3)
    msg.header.frame_id = "camera"
    msg.data = frame
    period = 1.0 / args.rate
    sent = []
    for phase, seconds in (("warmup", args.warmup), ("run", args.seconds)):
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < seconds:
            stamp = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 10**9)
            pub.publish(msg)
            if phase == "run":
                sent.append(stamp)
            i += 1
            time.sleep(max(0.0, t0 + i * period - time.monotonic()))
    print("SENT " + json.dumps(sent), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


# ---------------------------------------------------------------------- measuring process
def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


class Listener:
    """Arrival wall-clock time of each answered stamp on one output topic."""

    def __init__(self):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        rclpy.init()
        self.rclpy = rclpy
        self.node = rclpy.create_node("pipeline_bench_listener")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()
        self.arrivals: dict[int, int] = {}
        self.lock = threading.Lock()

    def listen(self, topic: str):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from vision_msgs.msg import Detection2DArray

        def got(msg):
            now = time.time_ns()
            with self.lock:
                self.arrivals.setdefault(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                                         now)
        return self.node.create_subscription(
            Detection2DArray, topic, got, QoSProfile(depth=50,
                                                     reliability=ReliabilityPolicy.RELIABLE))

    def embeddings(self, node: str) -> int:
        """The recognizer's embeddings counter (its ~/get_stats service), or -1 without one."""
        from std_srvs.srv import Trigger

        client = self.node.create_client(Trigger, f"{node}/get_stats")
        try:
            if not client.wait_for_service(timeout_sec=10):
                return -1
            future = client.call_async(Trigger.Request())
            deadline = time.monotonic() + 10
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
            return int(json.loads(future.result().message).get("embeddings", -1)) \
                if future.done() else -1
        finally:
            self.node.destroy_client(client)

    def close(self):
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def run_case(listener, ns, output, subscribers, size, faces, pids, args, log_dir) -> dict:
    sub = listener.listen(f"{ns}/{output}")
    deadline = time.monotonic() + 120
    while sub.get_publisher_count() < 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"nodes in {ns} did not come up (logs in {log_dir})")
        time.sleep(0.1)
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--publish", size, "--faces", str(faces), "--ns", ns,
           "--seconds", str(args.seconds), "--warmup", str(args.warmup),
           "--subscribers", str(subscribers), "--rate", str(args.rate)]
    cpu0 = None
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    # CPU is counted over the measured part only: from the end of the warm-up.
    time.sleep(args.warmup + 1.0)
    cpu0 = sum(cpu_seconds(p) for p in pids)
    recognizer = f"{ns}/face_recognizer" if subscribers > 1 else None
    emb0 = listener.embeddings(recognizer) if recognizer else -1
    t0 = time.monotonic()
    out, _ = proc.communicate(timeout=args.seconds + args.warmup + 120)
    cpu1 = sum(cpu_seconds(p) for p in pids)
    emb1 = listener.embeddings(recognizer) if recognizer else -1
    emb_per_s = (emb1 - emb0) / (time.monotonic() - t0) if min(emb0, emb1) >= 0 \
        else float("nan")
    time.sleep(1.0)  # answers still in flight
    sent = json.loads(out.split("SENT ", 1)[1])
    with listener.lock:
        lat = [(listener.arrivals[s] - s) / 1e6 for s in sent if s in listener.arrivals]
    listener.node.destroy_subscription(sub)
    n = len(lat)
    return {"size": size, "faces": faces, "sent": len(sent), "answered": n,
            "p50": statistics.median(lat) if lat else float("nan"),
            "p95": float(np.percentile(lat, 95)) if lat else float("nan"),
            "cpu_ms": (cpu1 - cpu0) * 1000 / n if n else float("nan"), "load": load,
            "emb_per_s": emb_per_s}


def profile_steps(sizes, backbone: str, max_size: int, threads: int, repeats: int = 30) -> None:
    """Where a frame's time goes in the node path, without DDS scheduling: median CPU ms of
    each step of one frame (rclpy (de)serialisation stands for the copy into and out of the
    middleware), single process, one face."""
    from face_perception.detection import Detector
    from face_perception.recognition import Embedder, Recognizer

    det = Detector(backbone=backbone, max_size=max_size, num_threads=threads)
    rec = Recognizer(Embedder(num_threads=threads), None, detector=det)

    def cpu_ms(fn):
        fn()
        times = []
        for _ in range(repeats):
            c0 = time.process_time()
            fn()
            times.append((time.process_time() - c0) * 1e3)
        return statistics.median(times)

    print(f"\nNode path per frame, median CPU ms of {repeats} (one face, {backbone}, max_size "
          f"{max_size}, {threads} threads, load average {os.getloadavg()[0]:.1f})\n")
    steps = ["serialize (publisher)", "deserialize (each subscriber)", "image_to_bgr",
             "detector: resize", "(before: one INTER_AREA resize)", "detector: blob",
             "detector: network", "detector: decode",
             "detections message", "recognizer: align + embed", "total detect()"]
    print("| step | " + " | ".join(sizes) + " |")
    print("|---|" + "---:|" * len(sizes))
    table = {step: [] for step in steps}
    for size in sizes:
        w, h = (int(v) for v in size.split("x"))
        for step, ms in _profile_frame(det, rec, w, h, cpu_ms).items():
            table[step].append(ms)
    for step in steps:
        print(f"| {step} | " + " | ".join(f"{v:.2f}" for v in table[step]) + " |")


def _profile_frame(det, rec, w: int, h: int, cpu_ms) -> dict:
    """CPU ms of each step of the node path for one w x h frame (see profile_steps)."""
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import Image

    from face_perception.ros.conversions import faces_to_detection_array, image_to_bgr

    frame = frame_with_faces(1, w, h)
    msg = Image(height=h, width=w, encoding="bgr8", step=w * 3, data=frame.tobytes())
    raw = serialize_message(msg)
    got = deserialize_message(raw, Image)
    img = image_to_bgr(got)
    scale = det.input_scale(h, w)
    resized, factors = det._resize(img, scale)
    blob = det.preprocess(img, scale)[0]
    outs = det._run(blob)
    faces = det.detect(img)
    return {
        "serialize (publisher)": cpu_ms(lambda: serialize_message(msg)),
        "deserialize (each subscriber)": cpu_ms(lambda: deserialize_message(raw, Image)),
        "image_to_bgr": cpu_ms(lambda: image_to_bgr(got)),
        "detector: resize": cpu_ms(lambda: det._resize(img, scale)),
        # What the resize cost before: one INTER_AREA call below half size.
        "(before: one INTER_AREA resize)": cpu_ms(lambda: cv2.resize(
            img, resized.shape[1::-1], interpolation=cv2.INTER_AREA if scale < 0.5
            else cv2.INTER_LINEAR)) if scale < 1 else 0.0,
        "detector: blob": cpu_ms(lambda: det._to_blob(resized)),
        "detector: network": cpu_ms(lambda: det._run(blob)),
        "detector: decode": cpu_ms(
            lambda: det._decode([o[0] for o in outs], blob.shape[2:], factors)),
        "detections message": cpu_ms(lambda: faces_to_detection_array(faces, got.header)),
        "recognizer: align + embed": cpu_ms(lambda: rec.embed(img, faces)),
        "total detect()": cpu_ms(lambda: det.detect(img)),
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="640x480 and 1280x720, one face, 10 s each, detector+recognizer")
    p.add_argument("--configs", nargs="+", choices=list(CONFIGS))
    p.add_argument("--sizes", nargs="+", default=["640x480", "1280x720", "1920x1080"])
    p.add_argument("--faces", nargs="+", type=int, default=[1, 5])
    p.add_argument("--seconds", type=float, default=120.0, help="measured seconds per case")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds sent first, not counted")
    p.add_argument("--rate", type=float, default=30.0)
    p.add_argument("--max-size", type=int, default=640,
                   help="detector max_size (640: the node default; 1280: before issue 15)")
    p.add_argument("--num-threads", type=int, default=0,
                   help="nodes' num_threads (0: their default, every usable core; -1: every "
                        "core, as before issue 15; 1: one thread per session)")
    p.add_argument("--tracking", nargs="+", choices=["on", "off"], default=["on"],
                   help="nodes' tracking parameter (both: one run each, side by side)")
    p.add_argument("--backbone", default="mnet", help="detector backbone (mnet, yunet, ...)")
    p.add_argument("--score-threshold", type=float,
                   help="detector score_threshold (default: the node's)")
    p.add_argument("--profile", action="store_true",
                   help="only time each step of the node path in this process (no DDS)")
    p.add_argument("--busy-core", nargs="+", choices=["off", "on"], default=["off"],
                   help="keep one core busy with another process during each case")
    p.add_argument("--spin", nargs="+", choices=["off", "on"], default=["off"],
                   help="onnxruntime pool threads spin in the nodes (on) or sleep (off, the "
                        "package policy)")
    # The publisher child's own options.
    p.add_argument("--publish", help=argparse.SUPPRESS)
    p.add_argument("--ns", help=argparse.SUPPRESS)
    p.add_argument("--subscribers", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.publish:
        args.faces = args.faces[0] if isinstance(args.faces, list) else args.faces
        return publish(args)
    if args.profile:
        profile_steps(args.sizes, args.backbone, args.max_size, args.num_threads or 2)
        return 0
    if args.quick:
        args.sizes, args.faces, args.seconds = ["640x480", "1280x720"], [1], 10.0
        args.configs = args.configs or ["detector+recognizer"]
    args.configs = args.configs or list(CONFIGS)

    from face_perception.onnx.session import usable_cores
    from face_perception.ros.processes import start_entry_point

    work = Path(tempfile.mkdtemp(prefix="pipeline_bench_"))
    gallery = make_gallery(work)
    # num_threads -1 (the old behaviour): every core, explicitly.
    threads = usable_cores() if args.num_threads < 0 else args.num_threads
    listener = Listener()
    rows = []
    runs = [(name, tracking, spin, busy) for name in args.configs for tracking in args.tracking
            for spin in args.spin for busy in args.busy_core]
    try:
        for i, (name, tracking, spin, busy) in enumerate(runs):
            executables, output = CONFIGS[name]
            ns = f"/bench{i}"
            log_dir = work / f"{name.replace('+', '_')}_tracking_{tracking}_{i}"
            log_dir.mkdir()
            params = log_dir / "params.yaml"
            threshold = (f"    score_threshold: {args.score_threshold}\n"
                         if args.score_threshold is not None else "")
            params.write_text("/**:\n  ros__parameters:\n    publish_annotated: false\n"
                              f"    gallery_path: \"{gallery}\"\n    max_size: {args.max_size}\n"
                              f"    num_threads: {threads}\n    backbone: {args.backbone}\n"
                              + threshold +
                              f"    tracking: {'true' if tracking == 'on' else 'false'}\n")
            env = dict(os.environ)
            env["FACE_PERCEPTION_ORT_SPIN"] = "1" if spin == "on" else "0"
            burner = None
            procs = [start_entry_point(exe, ["--ros-args", "-r", f"__ns:={ns}", "--params-file",
                                             str(params)], log_dir / f"{exe}.log", env)
                     for exe in executables]
            try:
                if busy == "on":
                    burner = subprocess.Popen(["sh", "-c", "while :; do :; done"])
                subs = 1 if name == "detector" else 2
                for size in args.sizes:
                    for faces in args.faces:
                        row = run_case(listener, ns, output, subs, size, faces,
                                       [pr.pid for pr in procs], args, log_dir)
                        row["config"] = name
                        row["tracking"] = tracking
                        row["spin"], row["busy"] = spin, busy
                        rows.append(row)
                        print(f"{name} {size} {faces} face(s): {row['answered']}/{row['sent']}"
                              f" p50 {row['p50']:.1f} ms", flush=True)
            finally:
                for pr in procs:
                    pr.stop(15)
                if burner is not None:
                    burner.kill()
                    burner.wait()
    finally:
        listener.close()
    print(f"\nROS pipeline as a camera sees it: separate best-effort publisher at "
          f"{args.rate:g} Hz, {args.seconds:g} s per case, detector max_size {args.max_size}, "
          f"num_threads {args.num_threads if args.num_threads else 'default (every core)'}"
          f", {usable_cores()} usable cores, backbone {args.backbone}\n")
    print("| configuration | tracking | ort spin | busy core | frame | faces | answered | p50 ms "
          "| p95 ms | embeddings/s | CPU ms/frame | load avg |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        share = f"{r['answered']}/{r['sent']} ({100 * r['answered'] / max(r['sent'], 1):.0f}%)"
        print(f"| {r['config']} | {r['tracking']} | {r['spin']} | {r['busy']} | {r['size']} "
              f"| {r['faces']} | {share} "
              f"| {r['p50']:.1f} | {r['p95']:.1f} | {r['emb_per_s']:.1f} | {r['cpu_ms']:.1f} "
              f"| {r['load']:.1f} |")
    print(f"\nlogs: {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
