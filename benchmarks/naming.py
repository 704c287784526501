"""Naming people on video: named right / wrong / unknown face-frames per identity mode, stranger
tracks named, embeddings per second; the back-off's cost with six strangers; flip on pairs.

The sequence (test/tracking_scenes.py ``naming_sequence``): real photos with real camera
effects on 640x480 frames at 30 Hz, four segments separated by scene cuts (a wide shot with two
~26 px faces, a close-up with motion blur and a slow turn, an audience of four ~40 px blurred
JPEG faces, two mirrored/turning 70 px faces). Two galleries of one photo per person, each
other's strangers: obama+hopper (strangers biden, astronaut) and biden+astronaut (strangers
obama in three photos, hopper).

Modes: single-frame (tracking off, every face judged alone by the open-set rule), live (causal
track evidence, the nodes), offline (whole-track evidence, bag/video), offline+flip (embeddings
averaged with the mirror image).

Run from the repository folder: .venv/bin/python -m benchmarks.naming [--threads N]
[--calibrate] (--calibrate prints the stranger statistics per quality band that the shipped
defaults in recognition/open_set_evidence.py come from).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from face_perception.data.sample_photos import sample_photos_dir
from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.pipeline import FacePipeline
from face_perception.recognition import Embedder, Recognizer
from face_perception.tracking import FaceTracker, IdentityConfig
from test.tracking_scenes import (
    IDENTITY_OF,
    NAMING_GALLERIES,
    NamingPhotos,
    naming_outcome,
    naming_sequence,
    scene,
)

MODES = ("single-frame", "live", "offline", "offline+flip")


def gallery_of(embedder, detector, photos: NamingPhotos, people) -> Gallery:
    g = Gallery(embedder.meta.name, embedder.meta.embedding_size)
    for person in people:
        img = photos.images[person]
        face = max(detector.detect(img), key=lambda f: f.width * f.height)
        g.add(person, embedder.embed_faces(img, [face]))
    return g


def run_mode(mode, frames, detector, recognizer, identity=None):
    """(outputs, embeddings, seconds) of the whole sequence in one mode."""
    recognizer.embedder.flip = mode.endswith("+flip")
    tracker = None if mode == "single-frame" else FaceTracker()
    pipe = FacePipeline(detector, recognizer, tracker, identity,
                        identity_mode="offline" if mode.startswith("offline") else "live")
    start = time.perf_counter()
    results = [pipe.process(f.image, f.stamp_ns).without_image() for f in frames]
    if pipe.identity_mode == "offline":
        results = pipe.offline_names(results)
    seconds = time.perf_counter() - start
    recognizer.embedder.flip = False
    return [r.tracked for r in results], pipe.embeddings, seconds


def naming_table(frames, detector, embedder, photos):
    print(f"naming sequence: {len(frames)} frames 640x480 at 30 Hz, "
          f"{sum(len(f.truth) for f in frames)} face-frames")
    print("| gallery | mode | named right | wrong | unknown (enrolled) | stranger face-frames "
          "named | stranger tracks named | embeddings | embeddings/s | ms/frame |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for gname, people in NAMING_GALLERIES.items():
        rec = Recognizer(embedder, gallery_of(embedder, detector, photos, people),
                         detector=detector)
        for mode in MODES:
            outs, emb, secs = run_mode(mode, frames, detector, rec)
            c = naming_outcome(frames, outs, set(people))
            print(f"| {gname} | {mode} | {c['right']} | {c['wrong']} | {c['unknown']} | "
                  f"{c['stranger_named']}/{c['stranger_frames']} | {c['stranger_tracks_named']} "
                  f"| {emb} | {emb / secs:.1f} | {1000 * secs / len(frames):.0f} |")


def backoff_table(detector, embedder, photos, frames_n: int):
    """Six strangers (not in the gallery) at 640x480, 30 Hz: embeddings with and without the
    back-off of unknown tracks (identity_mode live, the nodes' setting)."""
    from test.tracking_scenes import Cutouts

    cut = Cutouts(sample_photos_dir(), detector)
    rec = Recognizer(embedder, gallery_of(embedder, detector, photos, ["hopper"]),
                     detector=detector)
    people = ["obama", "biden", "obama2", "obama3", "biden", "obama"]
    frames = scene(cut, frames_n, lambda i: [(p, 60 + 105 * k, 190 + 70 * (k % 2) + i % 30, 70)
                                             for k, p in enumerate(people)])
    print(f"\nsix strangers, {len(frames)} frames at 30 Hz ({len(frames) / 30:.1f} s of video), "
          "gallery: hopper only")
    print("| unknown tracks | embeddings | embeddings per second of video | ms/frame |")
    print("|---|---:|---:|---:|")
    rows = {}
    for label, cfg in (("embedded every 0.1 s (before)", IdentityConfig(backoff=1.0)),
                       ("back-off x2 up to 1 s (now)", IdentityConfig())):
        outs, emb, secs = run_mode("live", frames, detector, rec, cfg)
        rows[label] = emb
        print(f"| {label} | {emb} | {emb / (len(frames) / 30):.1f} | "
              f"{1000 * secs / len(frames):.0f} |")
    a, b = rows.values()
    print(f"back-off: x{b / a:.2f} the embeddings")


def flip_pairs(detector, embedder, photos):
    """Same-person and different-person similarities of degraded views, flip off/on."""
    from face_perception.recognition.open_set_views import CALIBRATION_EFFECTS, place_face
    from face_perception.tracking.association import iou_matrix

    views: dict = {}
    for flip in (False, True):
        embedder.flip = flip
        for person, img in photos.images.items():
            for eff in CALIBRATION_EFFECTS:
                frame, placed = place_face(img, photos.boxes[person], eff)
                faces = detector.detect(frame)
                if not faces:
                    continue
                iou = iou_matrix([placed], [f.box for f in faces])[0]
                j = int(np.argmax(iou))
                if iou[j] >= 0.3:
                    views.setdefault(flip, []).append(
                        (IDENTITY_OF[person], person, eff.face_h,
                         embedder.embed_faces(frame, [faces[j]])[0]))
    embedder.flip = False
    print("\nflip on pairs (degraded views of the photos, every pair of different photos):")
    print("| flip | face px | same-person mean | different-person mean | different p99 | "
          "gap (same mean - diff p99) |")
    print("|---|---:|---:|---:|---:|---:|")
    for flip in (False, True):
        rows = views[flip]
        for size in sorted({r[2] for r in rows}):
            same, diff = [], []
            sel = [r for r in rows if r[2] == size]
            for i, a in enumerate(sel):
                for b in sel[i + 1:]:
                    if a[1] == b[1]:
                        continue  # the same photo: not a pair
                    sim = float(a[3] @ b[3])
                    (same if a[0] == b[0] else diff).append(sim)
            p99 = np.percentile(diff, 99)
            print(f"| {'on' if flip else 'off'} | {size:.0f} | {np.mean(same):.3f} | "
                  f"{np.mean(diff):.3f} | {p99:.3f} | {np.mean(same) - p99:+.3f} |")


def calibrate(detector, embedder, photos):
    """Stranger statistics per quality band from the test photos (the shipped defaults)."""
    from face_perception.recognition.open_set_eval import stranger_views
    from face_perception.recognition.open_set_evidence import (
        BAND_NAMES,
        StrangerViews,
        fit_bands,
    )
    from test.open_set_photos import lfw_crops

    views = StrangerViews()
    lfw = lfw_crops()[:30]
    for gname, people in NAMING_GALLERIES.items():
        g = gallery_of(embedder, detector, photos, people)
        strangers = [(p, img) for p, img in photos.images.items()
                     if IDENTITY_OF[p] not in people]
        strangers += [(f"lfw{i}", img) for i, img in enumerate(lfw)]
        got = stranger_views(g, detector, embedder,
                             [(f"{gname}:{IDENTITY_OF[p]}" if not p.startswith("lfw") else p,
                               img) for p, img in strangers])
        views.person += got.person
        views.similarity += got.similarity
        views.quality += got.quality
    bands = fit_bands(views, min_people=3)
    print("| band | views | strangers | mean | between sd | within sd |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, b in zip(BAND_NAMES, bands):
        print(f"| {name} | {b.views} | {b.people} | {b.mean:.3f} | {b.between:.3f} | "
              f"{b.within:.3f} |")
    q = np.array(views.quality)
    s = np.array(views.similarity)
    print(f"all views: {len(s)}, quality p10/p50/p90 {np.percentile(q, [10, 50, 90]).round(3)}, "
          f"best similarity max {s.max():.3f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads")
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--short", action="store_true", help="a third of the frames")
    ap.add_argument("--backoff-frames", type=int, default=150)
    args = ap.parse_args()
    detector = Detector(num_threads=args.threads)
    embedder = Embedder("dlib_resnet", backend="onnx", num_threads=args.threads)
    photos = NamingPhotos(sample_photos_dir(), detector)
    print(f"threads: {args.threads or 'all'} of {os.cpu_count()} cores; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} at start")
    if args.calibrate:
        calibrate(detector, embedder, photos)
        return 0
    frames = naming_sequence(photos, short=args.short)
    naming_table(frames, detector, embedder, photos)
    backoff_table(detector, embedder, photos, args.backoff_frames)
    flip_pairs(detector, embedder, photos)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
