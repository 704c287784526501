#!/usr/bin/env python3
"""Embedding speed: our dlib ResNet (ONNX Runtime, PyTorch) vs dlib's compute_face_descriptor.

Every contender embeds the SAME 150x150 chips (dlib's own get_face_chip crops of the test
photos, repeated), so the figures compare networks, not detectors or alignment. Prints
embeddings/s per backend and batch size, the ratio to dlib, and the largest difference to
dlib's descriptors; then the gallery search table of benchmarks/gallery_search.py.

    .venv/bin/python benchmarks/recognition.py [--quick] [--faces 64] [--threads N]
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np

from face_perception.data.sample_photos import sample_photos_dir as photos_dir

HERE = Path(__file__).resolve().parent

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg")


def dlib_chips(n_faces: int):
    import dlib

    from face_perception.recognition.pretrained import dlib_model_file

    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
    chips = []
    for name in PHOTOS:
        img = dlib.load_rgb_image(str(photos_dir() / name))
        rects = det(img, 0) or det(img, 1)
        chips.append(np.asarray(dlib.get_face_chip(img, sp(img, rects[0]), 150, 0.25)))
    reps = -(-n_faces // len(chips))
    return (chips * reps)[:n_faces]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (lazy initialisation, allocator)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def embedding_table(n_faces: int, repeats: int, threads, batches) -> None:
    import dlib

    from face_perception.recognition import Embedder
    from face_perception.recognition.pretrained import dlib_model_file

    chips_rgb = dlib_chips(n_faces)
    chips_bgr = np.stack([c[..., ::-1] for c in chips_rgb])
    model = dlib.face_recognition_model_v1(str(dlib_model_file()))

    ref = np.array([np.array(d) for d in model.compute_face_descriptor(chips_rgb)])
    t_dlib = timed(lambda: model.compute_face_descriptor(chips_rgb), repeats)
    dlib_rate = n_faces / t_dlib
    rows = [("dlib compute_face_descriptor (batch API)", "-", dlib_rate, 1.0, 0.0)]
    for backend in ("onnx", "onnx-int8", "torch"):
        for batch in batches:
            emb = Embedder("dlib_resnet", backend=backend, batch_size=batch, threads=threads)
            raw = emb.embed_raw(chips_bgr)
            diff = float(np.abs(raw - ref).max())
            t = timed(lambda e=emb: e.embed_chips(chips_bgr), repeats)
            rate = n_faces / t
            rows.append((f"face_perception Embedder ({backend})", str(batch), rate,
                         rate / dlib_rate, diff))
    print(f"\nEmbedding speed, {n_faces} chips of 150x150, best of {repeats}, "
          f"threads={threads or 'library default'}, cpu_count={os.cpu_count()}")
    print(f"{'contender':44s} {'batch':>5s} {'faces/s':>9s} {'vs dlib':>8s} "
          f"{'max|diff| to dlib':>18s}")
    for name, batch, rate, ratio, diff in rows:
        print(f"{name:44s} {batch:>5s} {rate:9.1f} {ratio:7.2f}x {diff:18.2e}")


def gallery_table(quick: bool) -> None:
    path = HERE / "gallery_search.py"
    if not path.is_file():
        print(f"\n(gallery search table: {path.name} is not in this checkout)")
        return
    spec = importlib.util.spec_from_file_location("gallery_search", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    print("\nGallery search (benchmarks/gallery_search.py), 128-d embeddings like dlib_resnet's")
    rows = mod.run(quick=quick, dim=128)
    print()
    mod.print_table(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="few faces, one repeat")
    ap.add_argument("--faces", type=int, default=None, help="chips to embed (default 64)")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op threads for our backends (default: library default)")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--no-gallery", action="store_true", help="skip the gallery search table")
    args = ap.parse_args(argv)
    n_faces = args.faces or (16 if args.quick else 64)
    repeats = args.repeats or (1 if args.quick else 3)
    batches = (1, 8) if args.quick else (1, 8, 32)
    embedding_table(n_faces, repeats, args.threads, batches)
    if not args.no_gallery:
        gallery_table(args.quick)
    return 0


if __name__ == "__main__":
    sys.exit(main())
