"""Detector size policy for camera frames: recall by face size and time per frame, side by side.

Faces cut from the real photos are pasted at known sizes (box width 16..160 px) into 640x480,
1280x720 and 1920x1080 frames (a blurred, darkened photo as background, four positions), and the
detector runs under each size policy on the same frames. Recall counts a pasted face found with
IoU >= 0.5. Prints a table per resolution: recall at each face size and median ms/frame, with the
time relative to today's default policy (short side 640, long side <= 1280).

    python benchmarks/size_policy.py            # about a minute
    python benchmarks/size_policy.py --repeats 3
"""
from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from face_perception.data.sample_photos import sample_photos_dir
from face_perception.detection import Detector

PORTRAITS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
RESOLUTIONS = [(640, 480), (1280, 720), (1920, 1080)]
FACE_WIDTHS = [16, 24, 32, 48, 64, 96, 160]
# name -> (target_size, max_size)
POLICIES = {
    "short 640 / long <= 1280 (old default)": (640, 1280),
    "long <= 960": (540, 960),
    "long <= 640 (camera default)": (640, 640),
}


def face_cuts(detector: Detector) -> list[tuple[np.ndarray, np.ndarray]]:
    """(crop, face box inside the crop) of each portrait's face, with a margin of context."""
    cuts = []
    folder = sample_photos_dir()
    for name in PORTRAITS:
        img = cv2.imread(str(folder / name))
        face = detector.detect(img)[0]
        x1, y1, x2, y2 = face.box
        w, h = x2 - x1, y2 - y1
        cx1, cy1 = int(max(0, x1 - 0.5 * w)), int(max(0, y1 - 0.5 * h))
        cx2, cy2 = int(min(img.shape[1], x2 + 0.5 * w)), int(min(img.shape[0], y2 + 0.5 * h))
        cuts.append((img[cy1:cy2, cx1:cx2].copy(),
                     np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32)))
    return cuts


def make_frames(cuts, width: int, height: int, face_width: int):
    """Frames of ``width`` x ``height`` each holding one pasted face of box width ``face_width``."""
    folder = sample_photos_dir()
    background = cv2.imread(str(folder / "obama3.jpg"))
    background = cv2.GaussianBlur(cv2.resize(background, (width, height)), (0, 0), 25) // 2
    frames = []
    positions = [(0.2, 0.3), (0.7, 0.3), (0.3, 0.7), (0.75, 0.75)]
    for crop, box in cuts:
        scale = face_width / (box[2] - box[0])
        small = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        sbox = box * scale
        for px, py in positions:
            frame = background.copy()
            x0 = int(px * width - small.shape[1] / 2)
            y0 = int(py * height - small.shape[0] / 2)
            x0 = min(max(0, x0), width - small.shape[1])
            y0 = min(max(0, y0), height - small.shape[0])
            if x0 < 0 or y0 < 0:
                continue  # face larger than the frame
            frame[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
            frames.append((frame, sbox + np.array([x0, y0, x0, y0], np.float32)))
    return frames


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over the frames")
    args = parser.parse_args()
    detectors = {name: Detector(backend="onnx", target_size=t, max_size=m)
                 for name, (t, m) in POLICIES.items()}
    cuts = face_cuts(next(iter(detectors.values())))
    for width, height in RESOLUTIONS:
        print(f"\n### {width}x{height}\n")
        header = "| policy | net input | " + " | ".join(f"{w}px" for w in FACE_WIDTHS) + \
            " | ms/frame | vs old |"
        print(header)
        print("|" + "---|" * (header.count("|") - 1))
        base_ms = None
        for name, det in detectors.items():
            recalls, times = [], []
            for fw in FACE_WIDTHS:
                frames = make_frames(cuts, width, height, fw)
                found = 0
                for frame, box in frames:
                    faces = det.detect(frame)
                    found += any(iou(f.box, box) >= 0.5 for f in faces)
                recalls.append(found / len(frames) if frames else float("nan"))
            frames = make_frames(cuts, width, height, 96)
            for _ in range(args.repeats):
                for frame, _box in frames:
                    t0 = time.perf_counter()
                    det.detect(frame)
                    times.append((time.perf_counter() - t0) * 1000)
            ms = statistics.median(times)
            base_ms = base_ms or ms
            s = det.input_scale(height, width)
            print(f"| {name} | {round(width * s)}x{round(height * s)} | "
                  + " | ".join(f"{r:.2f}" for r in recalls)
                  + f" | {ms:.1f} | {ms / base_ms:.2f}x |")


if __name__ == "__main__":
    main()
