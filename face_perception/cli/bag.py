"""``face-perception bag``: detect (and identify) faces in a rosbag2 file, write a new bag."""
from __future__ import annotations

import argparse
import sys

from face_perception.cli import add_command
from face_perception.cli.inference_options import add_frame_options, frame_parts_from_args


def run(args) -> int:
    """Read the image topic of a rosbag2 (a bag folder, .mcap or .db3 file), run face detection (and
    recognition with --gallery), and write a new bag with the original images plus
    vision_msgs/Detection2DArray topics, same timestamps. No ROS runtime needed."""
    from face_perception.bag.processing import output_topics, process_bag

    detector, recognizer = frame_parts_from_args(args, target_size=args.target_size,
                                                 max_size=args.max_size)
    topics = output_topics(args.image_topic)
    if args.detections_topic:
        topics["detections"] = args.detections_topic
    if args.identities_topic:
        topics["identities"] = args.identities_topic
    summary = process_bag(args.input_bag, args.output, args.image_topic, detector, recognizer,
                          annotated=args.annotated, storage=args.storage, topics=topics,
                          progress=not args.no_progress and sys.stderr.isatty()
                          or args.progress, tracking=not args.no_tracking,
                          anonymize=args.anonymize, identity_mode=args.identity_mode)
    print(summary.text())
    return 0


def register(sub) -> None:
    p = add_command(sub, "bag", run,
                    "detect/identify faces in a rosbag2 (.mcap/.db3), write a new bag",
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input_bag", metavar="INPUT_BAG")
    p.add_argument("--image-topic", required=True, help="sensor_msgs Image/CompressedImage topic")
    p.add_argument("--output", required=True, metavar="OUTPUT_BAG", help="new bag folder")
    p.add_argument("--gallery", metavar="FILE", help="gallery of known people: adds identities")
    p.add_argument("--anonymize", choices=["none", "unknown", "all"], default="none",
                   help="pixelate faces in the annotated images: those nobody was named for, "
                   "or all (docs/privacy.md)")
    p.add_argument("--annotated", action="store_true",
                   help="also write annotated images (boxes, landmarks, names)")
    p.add_argument("--storage", choices=["mcap", "sqlite3"],
                   help="output storage (default: the input's)")
    p.add_argument("--detections-topic", help="default: <image namespace>/faces/detections")
    p.add_argument("--identities-topic", help="default: <image namespace>/faces/identities")
    add_frame_options(p)
    p.add_argument("--target-size", type=int, default=640)
    p.add_argument("--max-size", type=int, default=1280)
    p.add_argument("--no-tracking", action="store_true",
                   help="judge every frame alone instead of naming tracks (for comparison)")
    p.add_argument("--identity-mode", choices=["offline", "live"], default="offline",
                   help="offline: name each track from all of its frames, on every frame of it "
                   "(reads the bag twice); live: from earlier frames only, as the nodes do "
                   "(docs/tracking.md); recorded in the bag's metadata")
    p.add_argument("--progress", action="store_true", help="progress bar even when not a tty")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
