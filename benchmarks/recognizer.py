"""Recognizer speed per frame on this CPU: batched identification against per-face calls, and
the cost of finding landmarks for bare boxes (faces from another detector).

Frames of 1280x720 hold N real faces (crops of the test photos on a grey canvas). For each N:

- identify, landmarks given, all faces in one embedder call: the reference, 1.00x
- identify called once per face (N embedder calls): what a per-face loop costs
- identify with bare boxes (landmarks=None): one batched detector pass over padded crops finds
  the landmarks, then one embedder call
- the detector on the whole frame, for scale

Prints a Markdown table: ms/frame (median), time relative to the reference (lower is faster).

    python benchmarks/recognizer.py            # about a minute
    python benchmarks/recognizer.py --quick    # a few seconds
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

PORTRAITS = ["obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg"]
FRAME = (1280, 720)


def face_crops(photo_dir: Path, detector) -> list[np.ndarray]:
    crops = []
    for name in PORTRAITS:
        img = cv2.imread(str(photo_dir / name))
        x1, y1, x2, y2 = detector.detect(img)[0].box.astype(int)
        pad = (x2 - x1) // 3
        h, w = img.shape[:2]
        crop = img[max(0, y1 - pad):min(h, y2 + pad), max(0, x1 - pad):min(w, x2 + pad)]
        crops.append(cv2.resize(crop, (150, 180), interpolation=cv2.INTER_AREA))
    return crops


def make_frame(crops: list[np.ndarray], n: int) -> np.ndarray:
    """n face crops in a grid on a grey 1280x720 frame."""
    width, height = FRAME
    frame = np.full((height, width, 3), 114, np.uint8)
    for i in range(n):
        crop = crops[i % len(crops)]
        row, col = divmod(i, 6)
        y, x = 40 + row * 220, 30 + col * 205
        frame[y:y + crop.shape[0], x:x + crop.shape[1]] = crop
    return frame


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and face counts")
    parser.add_argument("--backend", choices=["onnx", "torch"], default="onnx")
    parser.add_argument("--photos", type=Path, help="folder of the test photos")
    args = parser.parse_args(argv)

    from face_perception.data.sample_photos import sample_photos_dir as photos_dir
    from face_perception.detection import Detector
    from face_perception.gallery import Gallery
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.types import Face

    photos = args.photos or photos_dir()
    detector = Detector(backend=args.backend)
    embedder = Embedder("dlib_resnet", backend=args.backend)
    gallery = Gallery(embedder.meta.name, embedder.meta.embedding_size)
    for name in PORTRAITS:
        img = cv2.imread(str(photos / name))
        gallery.add(name.split(".")[0].rstrip("0123456789"),
                    embedder.embed_faces(img, detector.detect(img)[:1]))
    recognizer = Recognizer(embedder, gallery, detector=detector)
    crops = face_crops(photos, detector)
    counts = (1, 4) if args.quick else (1, 4, 8, 12)
    repeats = 3 if args.quick else 10

    print(f"Recognizer per 1280x720 frame, dlib_resnet, {args.backend} backend, "
          f"median of {repeats} runs\n")
    print("| faces | method | ms/frame | vs batched |")
    print("|---:|---|---:|---:|")
    for n in counts:
        frame = make_frame(crops, n)
        faces = detector.detect(frame)
        if len(faces) != n:
            print(f"| {n} | (detector found {len(faces)} faces; skipped) | | |")
            continue
        bare = [Face(f.box, f.score, None) for f in faces]
        ref = median_ms(lambda: recognizer.identify(frame, faces), repeats)  # noqa: B023
        rows = [
            ("identify, one batched embedder call", ref),
            ("identify once per face", median_ms(
                lambda: [recognizer.identify(frame, [f]) for f in faces], repeats)),  # noqa: B023
            ("identify, bare boxes (landmark search)", median_ms(
                lambda: recognizer.identify(frame, bare), repeats)),  # noqa: B023
            ("detector on the frame (for scale)", median_ms(
                lambda: detector.detect(frame), repeats)),  # noqa: B023
        ]
        for label, ms in rows:
            print(f"| {n} | {label} | {ms:.1f} | {ms / ref:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
