"""Child process for the transport tests: a camera-like bgr8 publisher at a fixed rate.

Stamps lie on an exact grid (first stamp + i / rate), so a test knows which frames exist; with
--skip-every N every N-th frame of the grid is left out, like a link that loses a share of frames.
Frames show a real face photo, so a detector has something to find. Prints `SENT <json>` with the
stamps (ns) it published, once it is done.

    python test/frame_publisher.py --topic image --width 640 --height 480 --rate 30 --seconds 3
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image


def make_frame(photo: Path, width: int, height: int) -> np.ndarray:
    """The photo scaled to fit the frame, centred on grey."""
    img = cv2.imread(str(photo), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f"cannot read photo {photo}")
    scale = min(width / img.shape[1], height / img.shape[0])
    img = cv2.resize(img, (max(1, int(img.shape[1] * scale)), max(1, int(img.shape[0] * scale))))
    frame = np.full((height, width, 3), 127, np.uint8)
    y0, x0 = (height - img.shape[0]) // 2, (width - img.shape[1]) // 2
    frame[y0:y0 + img.shape[0], x0:x0 + img.shape[1]] = img
    return frame


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--topic", default="image")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--skip-every", type=int, default=0, help="leave out every N-th frame")
    ap.add_argument("--warmup-frames", type=int, default=0,
                    help="send this many frames first (same grid, never skipped) and leave them "
                         "out of the reported stamps: lets the receiver's model warm up")
    ap.add_argument("--reliable", action="store_true", help="reliable writer (default best effort)")
    ap.add_argument("--photo", type=Path, required=True)
    ap.add_argument("--match-timeout", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=1.0, help="seconds to wait after matching")
    args = ap.parse_args(argv)

    frame = make_frame(args.photo, args.width, args.height)
    rclpy.init()
    node = rclpy.create_node("test_frame_publisher")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                     reliability=ReliabilityPolicy.RELIABLE if args.reliable
                     else ReliabilityPolicy.BEST_EFFORT)
    pub = node.create_publisher(Image, args.topic, qos)
    deadline = time.monotonic() + args.match_timeout
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if pub.get_subscription_count() == 0:
        print(f"no subscriber on {args.topic} within {args.match_timeout} s", flush=True)
        return 2
    time.sleep(args.settle)
    msg = Image(height=args.height, width=args.width, encoding="bgr8", step=args.width * 3)
    msg.header.frame_id = "test_camera"
    msg.data = frame.tobytes()
    period_ns = int(round(1e9 / args.rate))
    count = int(round(args.seconds * args.rate))
    warm = max(0, args.warmup_frames)
    first = time.time_ns()
    start = time.monotonic()
    sent, warmup = [], []
    for i in range(warm + count):
        delay = start + i * period_ns / 1e9 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        k = i - warm  # index in the measured part
        if k >= 0 and args.skip_every and k % args.skip_every == args.skip_every - 1:
            continue
        stamp = first + i * period_ns
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        pub.publish(msg)
        (sent if k >= 0 else warmup).append(stamp)
    time.sleep(0.5)  # best effort: nothing to flush, but keep the writer up for late readers
    print("SENT " + json.dumps({"stamps": sent, "warmup": warmup, "grid": count,
                                "period_ns": period_ns}), flush=True)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
