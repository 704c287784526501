"""`make demo`: the package's main job on the shipped real photos, as a user runs it.

1. detect faces in every photo (CLI), writing JSON and annotated images;
2. enroll obama and biden from one photo each into a gallery (CLI);
3. recognise the other photos and verify two pairs (CLI);
4. process a rosbag offline (`face-perception bag`);
5. run the ROS 2 pipeline live: face_detector and face_recognizer as separate processes, a replay
   process publishing the photos, and this script listening to faces/identities over real DDS.
Everything lands in demo_output/.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from face_perception.data.sample_photos import sample_photos_dir
from face_perception.ros.processes import entry_point, start_entry_point

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo_output"


def step(title: str) -> None:
    print(f"\n=== {title}", flush=True)


def cli(*args: str) -> None:
    """The installed `face-perception` command, as a user runs it."""
    print("$ face-perception " + " ".join(args), flush=True)
    subprocess.run([str(entry_point("face-perception")), *args], check=True, cwd=ROOT)


def collage(photos: Path) -> Path:
    """One frame with both people side by side (a 'two faces in view' camera frame)."""
    tiles = []
    for name in ("obama2.jpg", "biden.jpg"):
        img = cv2.imread(str(photos / name))
        scale = 360 / img.shape[0]
        tiles.append(cv2.resize(img, (int(img.shape[1] * scale), 360)))
    frame = np.zeros((360, 640, 3), np.uint8)
    x = 0
    for tile in tiles:
        w = min(tile.shape[1], 640 - x)
        frame[:, x:x + w] = tile[:, :w]
        x += w
    path = OUT / "inputs/obama2_and_biden.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), frame)
    return path


FRAMES_PER_SCENE = 5


def live_ros(gallery: Path, frames: list[Path]) -> None:
    env = dict(os.environ)
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.update({k: env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID")})
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from vision_msgs.msg import Detection2DArray

    logs = OUT / "ros_logs"
    logs.mkdir(parents=True, exist_ok=True)
    common = ["--ros-args", "-r", "__ns:=/demo", "-p", "qos_reliability:=reliable"]
    nodes = {"face_detector": common,
             "face_recognizer": common + ["-p", f"gallery_path:={gallery}"]}
    procs = []
    for name, args in nodes.items():
        procs.append(start_entry_point(name, args, logs / f"{name}.log", env, cwd=ROOT))
        print(f"started {name} (pid {procs[-1].pid}), log {logs / (name + '.log')}")
    rclpy.init()
    node = rclpy.create_node("demo_listener", namespace="/demo")
    got: list[Detection2DArray] = []
    node.create_subscription(Detection2DArray, "faces/identities", got.append,
                             QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE))
    replay = None
    try:
        # Start the camera only once our listener has discovered the recognizer's output, so
        # that no identities are published before anyone listens (volatile QoS keeps nothing).
        deadline = time.monotonic() + 120
        while node.count_publishers("/demo/faces/identities") < 1:
            if time.monotonic() > deadline:
                raise SystemExit(f"demo: face_recognizer did not come up; see {logs}")
            rclpy.spin_once(node, timeout_sec=0.1)
        settle = time.monotonic() + 1.0
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.1)
        replay = start_entry_point(
            "face_perception_replay",
            [*map(str, frames), "--topic", "/demo/image", "--rate", "2", "--qos", "reliable",
             "--wait-subscribers", "2", "--wait-timeout", "120", "--linger", "2"],
            logs / "replay.log", env, cwd=ROOT)
        deadline = time.monotonic() + 180
        while len(got) < len(frames) and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        for msg, path in zip(got, frames):
            names = [d.results[0].hypothesis.class_id for d in msg.detections if d.results]
            scores = [round(d.results[0].hypothesis.score, 3) for d in msg.detections if d.results]
            print(f"  {path.name:28s} stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d}"
                  f"  identities {names}  similarity {scores}")
        if len(got) < len(frames):
            raise SystemExit(f"demo: only {len(got)} of {len(frames)} frames got identities; "
                             f"see {logs}")
    finally:
        node.destroy_node()
        rclpy.shutdown()
        if replay is not None:
            replay.wait(30)  # it ends by itself once every frame was acknowledged
        for p in ([replay] if replay else []) + procs:
            p.stop()


def main() -> int:
    try:
        photo_dir = sample_photos_dir()
    except FileNotFoundError as exc:
        raise SystemExit(f"demo: {exc}") from None
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir()
    photos = sorted(p for p in photo_dir.glob("*.jpg"))
    pair = collage(photo_dir)

    step("1. Detect faces (RetinaFace MobileNet-0.25, ONNX Runtime)")
    cli("detect", *map(str, photos + [pair]), "--out", str(OUT / "detect"))

    step("2. Enroll obama and biden from one photo each")
    people = OUT / "people"
    for name in ("obama", "biden"):
        (people / name).mkdir(parents=True)
        shutil.copy(photo_dir / f"{name}.jpg", people / name / f"{name}.jpg")
    gallery = OUT / "gallery.json"
    cli("enroll", str(people), "--gallery", str(gallery))

    step("3. Recognise the other photos; verify two pairs")
    others = [photo_dir / n for n in ("obama2.jpg", "obama3.jpg", "obama_partial_face.jpg")]
    others.append(pair)
    cli("recognize", *map(str, others), "--gallery", str(gallery), "--out", str(OUT / "recognize"))
    cli("verify", str(photo_dir / "obama.jpg"), str(photo_dir / "obama3.jpg"))
    cli("verify", str(photo_dir / "obama.jpg"), str(photo_dir / "biden.jpg"))

    step("4. Offline rosbag: detect + identify every frame, write a new bag")
    from face_perception.bag.rosbag_io import write_image_bag
    from face_perception.imageio import read_image_bgr
    # A camera sees each person for a while: every scene lasts five frames, so tracks form and
    # each track is named from all of its frames, on every frame of it (the bag's default
    # offline identity mode; a scene cut starts new tracks). docs/tracking.md.
    scenes = [photo_dir / "obama2.jpg", pair, photo_dir / "biden.jpg", photo_dir / "obama3.jpg"]
    frames = [scene for scene in scenes for _ in range(FRAMES_PER_SCENE)]
    # A rosbag2 bag is a folder (metadata.yaml + <folder name>.mcap): name the folder, not a file.
    in_bag = OUT / "camera"
    images = {p: read_image_bgr(p) for p in scenes}
    write_image_bag(in_bag, [(1_800_000_000_000_000_000 + i * 100_000_000, images[p])
                             for i, p in enumerate(frames)], topic="/camera/image")
    cli("bag", str(in_bag), "--image-topic", "/camera/image", "--output",
        str(OUT / "camera_faces"), "--gallery", str(gallery), "--annotated", "--no-progress")

    step("5. Live ROS 2: detector and recognizer nodes over DDS, photos replayed as a camera")
    live_ros(gallery, frames)

    print(f"\nDone. Annotated images: {OUT / 'detect'}, {OUT / 'recognize'}; "
          f"output bag: {OUT / 'camera_faces'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
