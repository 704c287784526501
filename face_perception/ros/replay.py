"""``face_perception_replay``: publish the images of a rosbag2 file or of image files at a rate.

Stands in for `ros2 bag play` (not installable here) and a camera driver, for tests, the demo
and the benchmarks: fresh or original header stamps, chosen QoS, raw or compressed, looping.

    face_perception_replay run.mcap --bag-topic /camera/image_raw --topic image --rate 15
    face_perception_replay a.jpg b.jpg --topic /camera/image_raw --loop 10 --qos reliable
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from face_perception.imageio import read_image_bgr
from face_perception.messages.images import bgr_to_compressed, bgr_to_raw
from face_perception.messages.stamps import ns_to_sec_nanosec, stamp_to_ns
from face_perception.ros.transport import TransportProfileError, apply_profile

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


class ReplayError(ValueError):
    """Sources that cannot be replayed (no images, unknown topic, mixed bag and files)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="face_perception_replay", description=__doc__.split("\n")[0])
    p.add_argument("sources", nargs="+", help="a rosbag2 (folder, .mcap or .db3) or image files")
    p.add_argument("--bag-topic", help="image topic to read from the bag (default: the only "
                   "image topic it has)")
    p.add_argument("--topic", default="image", help="topic to publish on (default: image)")
    p.add_argument("--rate", type=float, default=10.0, help="frames per second; 0 = as fast as "
                   "possible (default 10)")
    p.add_argument("--loop", type=int, default=1, help="play the frames this many times")
    p.add_argument("--stamps", choices=("fresh", "original"), default="fresh",
                   help="header stamps: the time of publishing, or the bag's (default fresh)")
    p.add_argument("--frame-id", default="camera", help="frame_id for image files")
    p.add_argument("--qos", choices=("best_effort", "reliable"), default="reliable")
    p.add_argument("--depth", type=int, default=10, help="publisher queue depth")
    p.add_argument("--compressed", choices=("jpeg", "png"), help="publish CompressedImage "
                   "(image files only; on TOPIC/compressed)")
    p.add_argument("--wait-subscribers", type=int, default=0, metavar="N",
                   help="wait until N subscribers are matched before publishing")
    p.add_argument("--wait-timeout", type=float, default=30.0)
    p.add_argument("--settle", type=float, default=0.5, help="seconds between the subscribers "
                   "matching and the first frame (DDS matching completes on both sides)")
    p.add_argument("--linger", type=float, default=1.0, help="seconds to stay after the last "
                   "frame; with reliable QoS also until every subscriber acknowledged it "
                   "(at most 10x this)")
    p.add_argument("--dds-profile", default=None, help="Fast DDS profile for this "
                   "publisher: default (shipped large-frame profile), off, or a path "
                   "(default: $FACE_PERCEPTION_DDS_PROFILE, else default)")
    return p


def _bag_frames(path: Path, bag_topic: Optional[str]) -> Iterator[tuple[int, str, dict]]:
    """(stamp_ns, kind, fields) of the bag's image messages, payload untouched."""
    from face_perception.bag import rosbag_io

    if bag_topic is None:
        with rosbag_io.open_reader(path) as reader:
            topics = sorted({c.topic for c in reader.connections
                             if c.msgtype in (rosbag_io.IMAGE, rosbag_io.COMPRESSED)})
        if len(topics) != 1:
            raise ReplayError(f"bag {path} has image topics {topics}; choose one with --bag-topic")
        bag_topic = topics[0]
    for rec in rosbag_io.read_images(path, bag_topic):
        m = rec.msg
        stamp = stamp_to_ns(m.header.stamp)
        if rec.msgtype == rosbag_io.COMPRESSED:
            yield stamp, "compressed", {"format": m.format, "data": m.data.tobytes(),
                                        "frame_id": m.header.frame_id}
        else:
            yield stamp, "raw", {"height": m.height, "width": m.width, "encoding": m.encoding,
                                 "is_bigendian": m.is_bigendian, "step": m.step,
                                 "data": m.data.tobytes(), "frame_id": m.header.frame_id}


def load_frames(args) -> list[tuple[int, str, dict]]:
    paths = [Path(s) for s in args.sources]
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"replay source not found: {p}")
    images = [p for p in paths if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if images and len(images) != len(paths):
        raise ReplayError("give either one rosbag or image files, not both")
    if not images:
        if len(paths) != 1:
            raise ReplayError(f"give one rosbag at a time, got {len(paths)}")
        frames = list(_bag_frames(paths[0], args.bag_topic))
    else:
        frames = []
        for i, path in enumerate(images):
            img = read_image_bgr(path)
            if args.compressed:
                f = bgr_to_compressed(img, args.compressed)
                fields = {"format": f["format"], "data": f["data"].tobytes()}
            else:
                fields = bgr_to_raw(img)
                fields["data"] = fields["data"].tobytes()
            fields["frame_id"] = args.frame_id
            frames.append((i * 100_000_000, "compressed" if args.compressed else "raw", fields))
    if not frames:
        raise ReplayError(f"no image frames in {', '.join(args.sources)}")
    return frames


class StopRequest:
    """SIGINT/SIGTERM as a flag the publishing loop checks, so the tool ends cleanly at any
    point (waiting, publishing, lingering) instead of rclpy's handler shutting the context
    down under a running call (which left an RCLError traceback)."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum = 0

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._handle)

    def _handle(self, signum, _frame) -> None:
        self.signum = signum
        self.event.set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when a stop was requested."""
        return self.event.wait(max(0.0, seconds))


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    stop = StopRequest()
    stop.install()
    try:
        frames = load_frames(args)
        apply_profile(args.dds_profile)
    except (ValueError, FileNotFoundError, TransportProfileError) as exc:
        print(f"face_perception_replay: error: {exc}", file=sys.stderr)
        return 2
    import rclpy
    from rclpy.duration import Duration
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CompressedImage, Image

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)  # ours are installed above
    node = rclpy.create_node("face_perception_replay")
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=args.depth,
                     reliability=ReliabilityPolicy.RELIABLE if args.qos == "reliable"
                     else ReliabilityPolicy.BEST_EFFORT)
    compressed = frames[0][1] == "compressed"
    topic = args.topic + "/compressed" if compressed and args.compressed else args.topic
    pub = node.create_publisher(CompressedImage if compressed else Image, topic, qos)
    published = 0

    def stopped() -> int:
        print(f"face_perception_replay: stopped by {signal.Signals(stop.signum).name} after "
              f"{published} frames on {pub.topic_name}", file=sys.stderr, flush=True)
        return 128 + stop.signum

    try:
        deadline = time.monotonic() + args.wait_timeout
        if pub.get_subscription_count() < args.wait_subscribers:
            print(f"face_perception_replay: waiting for {args.wait_subscribers} subscribers on "
                  f"{pub.topic_name}", flush=True)
        while pub.get_subscription_count() < args.wait_subscribers:
            if time.monotonic() > deadline:
                print(f"face_perception_replay: error: {pub.get_subscription_count()} of "
                      f"{args.wait_subscribers} subscribers after {args.wait_timeout} s on "
                      f"{pub.topic_name}", file=sys.stderr)
                return 3
            if stop.wait(0.05):
                return stopped()
        # This side sees the subscriber before the subscriber side has matched this writer;
        # frames sent in between would be dropped by a best-effort reader.
        if args.wait_subscribers and stop.wait(args.settle):
            return stopped()
        period = 1.0 / args.rate if args.rate > 0 else 0.0
        start = time.monotonic()
        for _ in range(args.loop):
            for stamp, kind, fields in frames:
                if stop.event.is_set():
                    return stopped()
                msg = CompressedImage() if kind == "compressed" else Image()
                for key, value in fields.items():
                    if key != "frame_id":
                        setattr(msg, key, value)
                msg.header.frame_id = fields["frame_id"]
                if args.stamps == "fresh":
                    msg.header.stamp = node.get_clock().now().to_msg()
                else:
                    msg.header.stamp.sec, msg.header.stamp.nanosec = ns_to_sec_nanosec(stamp)
                pub.publish(msg)
                published += 1
                if period and stop.wait(start + published * period - time.monotonic()):
                    return stopped()
        print(f"face_perception_replay: published {published} frames on {pub.topic_name}",
              flush=True)
        if stop.wait(args.linger):
            return stopped()
        if args.qos == "reliable":
            # Leaving earlier would drop frames a slow reader has not acknowledged yet. Waited
            # for in short steps so that a stop request is seen within a tenth of a second.
            ack_deadline = time.monotonic() + 10 * args.linger
            while not pub.wait_for_all_acked(Duration(seconds=0.1)):
                if stop.event.is_set():
                    return stopped()
                if time.monotonic() > ack_deadline:
                    print("face_perception_replay: warning: not every frame was acknowledged",
                          file=sys.stderr)
                    break
        return 0
    finally:
        node.destroy_node()
        rclpy.try_shutdown()

if __name__ == "__main__":
    raise SystemExit(main())
