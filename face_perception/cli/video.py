"""``face-perception video``: track and identify faces in a video file or camera, write an
annotated video (boxes, track ids, names, confidence) and optionally JSON Lines per frame."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional

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


def video_frames(source: str, cap, fps: float, live: bool, max_frames: int):
    """read_frames for run_passes: each call reads ``source`` from its start ((stamp, image) per
    frame, at most ``max_frames``, 0: all), the first call from the already open ``cap``."""
    unread = [cap]

    def read_frames():
        capture = unread.pop() if unread else open_capture(source)
        try:
            n = 0
            while not max_frames or n < max_frames:
                ok, image = capture.read()
                if not ok:
                    break
                yield frame_stamp_ns(capture, n, fps, live), image
                n += 1
        finally:
            capture.release()

    return read_frames


def capture_rate(cap, live: bool, max_frames: int) -> tuple[float, int]:
    """(fps, frames to expect; 0: unknown) of an open capture; 30 fps where it states none."""
    import cv2

    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 1000.0 else 30.0
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0) if not live else 0
    if max_frames:
        total = min(total, max_frames) if total else max_frames
    return fps, total


def video_pipeline(args, mode: str):
    from face_perception.pipeline import FacePipeline
    from face_perception.tracking import FaceTracker, TrackerConfig

    detector, recognizer = frame_parts_from_args(args)
    tracker = None if args.no_tracking else FaceTracker(TrackerConfig(max_age=args.max_age))
    return FacePipeline(detector, recognizer, tracker, anonymize=args.anonymize,
                        identity_mode=mode)


def progress_bar(enabled: bool, total: int):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total or None, unit="frame", file=sys.stderr, desc="video",
                dynamic_ncols=True)


def write_outputs(frames, out_path: Path, json_path: Optional[Path], fps: float,
                  recorded: str) -> tuple[int, int]:
    """Write the annotated video (and JSON Lines) of ``frames`` (PassFrames), all or nothing:
    beside the targets under temporary names, renamed at the end (the rule of
    face_perception.files.atomic_path; OpenCV needs the real suffix). (frames, face-frames named).
    """
    import cv2

    tmp_video = out_path.with_name(f".{out_path.stem}.part{out_path.suffix}")
    tmp_json = json_path.with_name(f".{json_path.name}.part") if json_path else None
    writer = jsonl = None
    count = named = 0
    try:
        jsonl = open(tmp_json, "w") if tmp_json else None
        for frame in frames:
            result = frame.result
            if writer is None:
                height, width = result.image.shape[:2]
                writer = cv2.VideoWriter(str(tmp_video), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                                         (width, height))
                if not writer.isOpened():
                    raise RuntimeError(f"cannot write video {out_path} with OpenCV")
            writer.write(result.annotated())
            if jsonl is not None:
                jsonl.write(json.dumps({"frame": frame.index, "stamp_ns": frame.stamp_ns,
                                        "identity_mode": recorded,
                                        "faces": [t.to_dict() for t in result.tracked]}) + "\n")
            named += result.named
            count += 1
        if count == 0:
            return 0, 0
        writer.release()
        writer = None
        if jsonl is not None:
            jsonl.close()
            jsonl = None
            tmp_json.replace(json_path)
        tmp_video.replace(out_path)
    finally:
        if writer is not None:
            writer.release()
        if jsonl is not None:
            jsonl.close()
        for tmp in (tmp_video, tmp_json):
            if tmp is not None:
                tmp.unlink(missing_ok=True)
    return count, named


def run(args) -> int:
    """Read a video file (or a camera index such as 0), detect and track faces (and name them with
    --gallery: a name per track from its accumulated evidence), and write an annotated video with
    boxes, track ids, names and confidences; --json adds JSON Lines, one line per frame."""
    from face_perception.pipeline import identity_mode_for, run_passes

    out_path = Path(args.out)
    if out_path.suffix.lower() not in (".mp4", ".avi", ".mkv"):
        raise ValueError(f"--out must end in .mp4, .avi or .mkv, got {args.out}")
    cap = open_capture(args.input)
    live = args.input.isdigit()
    try:
        mode, recorded = identity_mode_for(args.identity_mode, not args.no_tracking,
                                           rereadable=not live)
    except ValueError:
        cap.release()
        raise
    fps, total = capture_rate(cap, live, args.max_frames)
    pipeline = video_pipeline(args, mode)
    json_path = None
    if args.json is not None:
        json_path = Path(args.json) if args.json != "" else out_path.with_suffix(".jsonl")
    bar = progress_bar(not args.no_progress, total * pipeline.passes)
    try:
        frames = run_passes(pipeline, video_frames(args.input, cap, fps, live, args.max_frames),
                            progress=bar.update if bar is not None else None)
        count, named = write_outputs(frames, out_path, json_path, fps, recorded)
        if count == 0:
            raise ValueError(f"no frame could be read from {args.input}")
    finally:
        cap.release()
        if bar is not None:
            bar.close()
    print(f"frames: {count}; faces named in {named} face-frames ({recorded} identities); "
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
