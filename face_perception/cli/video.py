"""``face-perception video``: track and identify faces in a video file or camera, write an
annotated video (boxes, track ids, names, confidence) and optionally JSON Lines per frame."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from face_perception.cli import add_command
from face_perception.cli.inference_options import add_frame_options, frame_parts_from_args


def open_capture(source: str):
    """cv2.VideoCapture of a file, or of a camera when ``source`` is an integer index."""
    import cv2

    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
        what = f"camera {source}"
    else:
        if not Path(source).is_file():
            raise FileNotFoundError(f"video file not found: {source}")
        cap = cv2.VideoCapture(source)
        what = f"video {source}"
    if not cap.isOpened():
        raise ValueError(f"cannot open {what} (not a video OpenCV can read)")
    return cap


def frame_stamp_ns(cap, index: int, fps: float, live: bool) -> int:
    """A frame's time: the clock for a camera, the container's position for a file (frame
    index / fps where the container has none)."""
    import cv2

    if live:
        return time.monotonic_ns()
    msec = cap.get(cv2.CAP_PROP_POS_MSEC)
    if msec and msec > 0:
        return int(round(msec * 1e6))
    return int(round(index * 1e9 / fps))


def run(args) -> int:
    """Read a video file (or a camera index such as 0), detect and track faces (and name them with
    --gallery: a name per track from its accumulated evidence), and write an annotated video with
    boxes, track ids, names and confidences; --json adds JSON Lines, one line per frame."""
    import cv2

    from face_perception.pipeline import FacePipeline
    from face_perception.tracking import FaceTracker, TrackerConfig

    out_path = Path(args.out)
    if out_path.suffix.lower() not in (".mp4", ".avi", ".mkv"):
        raise ValueError(f"--out must end in .mp4, .avi or .mkv, got {args.out}")
    cap = open_capture(args.input)
    live = args.input.isdigit()
    mode = args.identity_mode or ("live" if live else "offline")
    if args.no_tracking:
        mode = "live"  # every frame judged alone: nothing to look ahead to
    recorded = "single-frame" if args.no_tracking else mode
    if live and mode == "offline":
        cap.release()
        raise ValueError("--identity-mode offline needs a video file (a camera cannot be read "
                         "twice); use live")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 1000.0 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
    if args.max_frames:
        total = min(total, args.max_frames) if total else args.max_frames
    detector, recognizer = frame_parts_from_args(args)
    tracker = None if args.no_tracking else FaceTracker(TrackerConfig(max_age=args.max_age))
    pipeline = FacePipeline(detector, recognizer, tracker, anonymize=args.anonymize,
                            identity_mode=mode)
    json_path = None
    if args.json is not None:
        json_path = Path(args.json) if args.json != "" else out_path.with_suffix(".jsonl")
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=(total * (2 if mode == "offline" else 1)) or None, unit="frame",
                   file=sys.stderr, desc="video", dynamic_ncols=True)

    def read_frames(capture):
        """(index, stamp, image) of the frames to use."""
        n = 0
        while not args.max_frames or n < args.max_frames:
            ok, image = capture.read()
            if not ok:
                break
            yield n, frame_stamp_ns(capture, n, fps, live), image
            n += 1

    frames = named = 0
    # Written beside the targets under temporary names and renamed at the end (the same
    # all-or-nothing rule as face_perception.files.atomic_path; OpenCV needs the real suffix).
    tmp_video = out_path.with_name(f".{out_path.stem}.part{out_path.suffix}")
    tmp_json = json_path.with_name(f".{json_path.name}.part") if json_path else None
    writer = jsonl = None
    try:
        decided = None
        if mode == "offline":  # first pass: every frame, then one name per whole track
            kept = []
            for _, stamp, image in read_frames(cap):
                kept.append((stamp, pipeline.process(image, stamp).without_image()))
                if bar is not None:
                    bar.update(1)
            decided = iter(zip([s for s, _ in kept],
                               pipeline.offline_names([r for _, r in kept])))
            cap.release()
            cap = open_capture(args.input)
        jsonl = open(tmp_json, "w") if tmp_json else None
        for n, stamp, image in read_frames(cap):
            if decided is not None:
                got = next(decided, None)
                if got is None:
                    break  # the file gave fewer frames the second time
                stamp, result = got
                result.image = image
            else:
                result = pipeline.process(image, stamp)
            if writer is None:
                writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (image.shape[1], image.shape[0]))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot write video {out_path} with OpenCV")
            writer.write(result.annotated())
            if jsonl is not None:
                jsonl.write(json.dumps({"frame": n, "stamp_ns": stamp,
                                        "identity_mode": recorded,
                                        "faces": [t.to_dict() for t in result.tracked]}) + "\n")
            named += result.named
            frames += 1
            if bar is not None:
                bar.update(1)
        if frames == 0:
            raise ValueError(f"no frame could be read from {args.input}")
        writer.release()
        writer = None
        if jsonl is not None:
            jsonl.close()
            jsonl = None
            tmp_json.replace(json_path)
        tmp_video.replace(out_path)
    finally:
        cap.release()
        if writer is not None:
            writer.release()
        if jsonl is not None:
            jsonl.close()
        if bar is not None:
            bar.close()
        for tmp in (tmp_video, tmp_json):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    print(f"frames: {frames}; faces named in {named} face-frames ({recorded} identities); "
          f"embeddings computed: {pipeline.embeddings}; wrote {out_path}"
          + (f" and {json_path}" if json_path else ""))
    return 0


def register(sub) -> None:
    p = add_command(sub, "video", run,
                    "track/identify faces in a video file or camera, write an annotated video",
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("input", metavar="IN", help="video file, or camera index (0, 1, ...)")
    p.add_argument("--out", required=True, metavar="OUT.mp4", help="annotated video to write")
    p.add_argument("--gallery", metavar="FILE", help="gallery of known people: adds names")
    p.add_argument("--json", nargs="?", const="", default=None, metavar="FILE",
                   help="JSON Lines per frame (default file: OUT with .jsonl)")
    p.add_argument("--no-tracking", action="store_true",
                   help="judge every frame alone (no track ids; for comparison)")
    p.add_argument("--max-age", type=float, default=1.0,
                   help="seconds a track survives without detections")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many (0: all)")
    p.add_argument("--identity-mode", choices=["offline", "live"], default=None,
                   help="offline (default for files): name each track from all of its frames, "
                   "on every frame of it; live (default for cameras): from earlier frames only, "
                   "as the nodes do (docs/tracking.md)")
    add_frame_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--anonymize", choices=["none", "unknown", "all"], default="none",
                   help="pixelate faces in the output video: those nobody was named for, or "
                   "all (docs/privacy.md)")
