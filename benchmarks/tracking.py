"""Tracking on/off: 5 faces at 30 Hz in 640x480 frames (frames answered, p50/p95 latency,
embeddings/s), and named frames / wrong names on the synthetic test sequences.

Frames arrive on a virtual 30 Hz clock; the pipeline (detector + tracking + recognition, real
models, real time per frame) takes the newest frame whenever it is free, as the nodes do.
Run from the repository folder (it reuses the tests' scene builder): .venv/bin/python -m
benchmarks.tracking [--frames 90]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from face_perception.data.sample_photos import sample_photos_dir as photos_dir
from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.recognition import Embedder, Recognizer
from face_perception.tracking import FaceTracker, TrackingPipeline
from test.tracking_scenes import RATE, Cutouts, name_counts, scene


def live(frames, detector, recognizer, tracking):
    pipe = TrackingPipeline(recognizer, FaceTracker() if tracking else None)
    clock, i, latencies, answered = 0.0, 0, [], 0
    while i < len(frames):
        i = max(i, int(clock * RATE))  # the newest frame that has arrived
        if i >= len(frames):
            break
        arrival = i / RATE
        clock = max(clock, arrival)
        start = time.perf_counter()
        pipe.update(frames[i].image, detector.detect(frames[i].image), frames[i].stamp_ns)
        clock += time.perf_counter() - start
        latencies.append(clock - arrival)
        answered += 1
        i += 1
    return answered, np.percentile(latencies, 50) * 1e3, np.percentile(latencies, 95) * 1e3, \
        pipe.embeddings / clock


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=90)
    args = ap.parse_args()
    photos = photos_dir()
    detector = Detector()
    emb = Embedder("dlib_resnet", backend="onnx")
    cut = Cutouts(photos, detector)

    def recognizer(people):
        g = Gallery(emb.meta.name, emb.meta.embedding_size)
        for p in people:
            img = read_image_bgr(photos / f"{p}.jpg")
            g.add(p, emb.embed_faces(img, detector.detect(img)[:1]))
        return Recognizer(emb, g, detector=detector)

    both, obama_only = recognizer(["obama", "biden"]), recognizer(["obama"])
    people = ["obama", "biden", "obama2", "obama3", "biden"]
    five = scene(cut, args.frames, lambda i: [(p, 70 + 125 * k, 200 + 60 * (k % 2) + i % 40, 70)
                                              for k, p in enumerate(people)])
    print(f"5 faces, 640x480 at {RATE:.0f} Hz, {len(five)} frames offered")
    print("| tracking | frames answered | p50 ms | p95 ms | embeddings/s |")
    print("|---|---|---|---|---|")
    rows = {}
    for tracking in (False, True):
        rows[tracking] = live(five, detector, both, tracking)
        a, p50, p95, eps = rows[tracking]
        print(f"| {'on' if tracking else 'off'} | {a} | {p50:.0f} | {p95:.0f} | {eps:.1f} |")
    print(f"ratio on/off: frames answered x{rows[True][0] / rows[False][0]:.2f}, "
          f"p50 x{rows[True][1] / rows[False][1]:.2f}")

    seqs = {
        "crossing (gallery obama+biden)": (both, scene(cut, 40, lambda i: [
            ("obama", 80 + 12 * i, 220, 100), ("biden", 560 - 12 * i, 260, 100)]), None),
        "one odd frame (biden in obama's place)": (both, scene(cut, 34, lambda i: [
            ("biden" if i == 20 else "obama", 100 + 8 * i, 240, 110)]), {"obama": "obama",
                                                                          "biden": "obama"}.get),
        "stranger + noise frames (gallery obama)": (obama_only, scene(cut, 36, lambda i: [
            ("obama", 150, 220, 100), ("obama2" if i % 6 == 3 else "biden", 470, 240, 100)]),
            {"obama": "obama"}.get),
    }
    print("\n| sequence | faces | named off | wrong off | named on | wrong on |")
    print("|---|---|---|---|---|---|")
    for name, (rec, frames, truth) in seqs.items():
        res = {}
        for tracking in (False, True):
            pipe = TrackingPipeline(rec, FaceTracker() if tracking else None)
            outs = [pipe.update(f.image, detector.detect(f.image), f.stamp_ns) for f in frames]
            res[tracking] = name_counts(frames, outs, truth or (lambda p: p))
        n = sum(len(f.truth) for f in frames)
        print(f"| {name} | {n} | {res[False]['named']} | {res[False]['wrong']} | "
              f"{res[True]['named']} | {res[True]['wrong']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
