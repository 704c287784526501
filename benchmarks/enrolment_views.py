"""What more enrolment views buy: 1 vs 3 vs 5 distinct views of the main track of a real clip.

Enrolment clips (test/enrolment_clips.py: the shipped photos, zoom, shake, motion blur, defocus,
JPEG): obama from obama.jpg + obama2.jpg (or obama3.jpg) + obama.jpg, biden from biden.jpg.
Held out: a clip of the obama photo that the enrolment clip does not show (obama3.jpg, or the
turned obama2.jpg) through the same camera. For each K the
gallery holds K views per person (``enrol_from_frames``, the CLI's ``enroll --video`` path); the
table gives, over the held-out frames, the genuine similarity to obama's best sample (p10,
median), the frames the open-set rule names obama and the frames named wrongly.
Run from the repository folder (it reuses the tests' clip builder):
.venv/bin/python -m benchmarks.enrolment_views [--threads 2] [--views 1,3,5]
"""
from __future__ import annotations

import argparse
import os

import numpy as np

from face_perception.data.sample_photos import sample_photos_dir as photos_dir
from face_perception.detection import Detector
from face_perception.enrolment.clip import enrol_from_frames
from face_perception.gallery import Gallery
from face_perception.recognition import Embedder, Recognizer
from face_perception.threads import resolve_threads
from test.enrolment_clips import clip_frames
from test.tracking_scenes import Cutouts


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=0, help="0: every usable core")
    ap.add_argument("--views", default="1,3,5")
    ap.add_argument("--frames", type=int, default=12, help="frames per photo in the clips")
    args = ap.parse_args()
    threads = resolve_threads(args.threads)
    detector = Detector(num_threads=threads)
    emb = Embedder("dlib_resnet", backend="onnx", num_threads=threads)
    cut = Cutouts(photos_dir(), detector)
    n = args.frames
    biden = clip_frames(cut, [("biden", 2 * n)], seed=2)
    # (enrolment photos of obama, held-out photo): each held-out photo is in no enrolment clip.
    protocols = [(("obama", "obama2", "obama"), "obama3"), (("obama", "obama3", "obama"), "obama2")]
    print(f"enrolment views (dlib_resnet, onnx, {threads} threads, load: "
          f"{os.getloadavg()[0]:.1f}; enrolment clips of {3 * n} (obama) and {2 * n} (biden) "
          f"frames, held-out clips of {2 * n} frames)")
    print("| obama enrolled from | held out | views asked | obama / biden samples | genuine sim "
          "p10 | genuine sim median | held-out frames named obama | named wrongly |")
    print("|---|---|---|---|---|---|---|---|")
    for photos, held in protocols:
        clips = {"obama": clip_frames(cut, [(p, n) for p in photos], seed=0), "biden": biden}
        probes = []
        for f in clip_frames(cut, [(held, 2 * n)], seed=5):
            faces = detector.detect(f.image)
            if faces:
                probes.append((f.image, max(faces, key=lambda x: x.area)))
        for k in [int(v) for v in args.views.split(",")]:
            g = Gallery(emb.meta.name, emb.meta.embedding_size)
            for person, frames in clips.items():
                r = enrol_from_frames(((f.stamp_ns, f.image) for f in frames), detector, emb,
                                      person, max_views=k)
                assert r.ok, r.reason
                g.add(person, r.selection.embeddings, sources=r.selection.sources,
                      qualities=r.selection.qualities)
            rec = Recognizer(emb, g, detector=detector)
            genuine, named, wrong = [], 0, 0
            for image, face in probes:
                e = rec.embed(image, [face])[0]
                genuine.append(float((g.samples("obama") @ e).max()))
                (cat,) = rec.identify(image, [face])
                named += cat is not None and cat.name == "obama"
                wrong += cat is not None and cat.name != "obama"
            print(f"| {' + '.join(p + '.jpg' for p in dict.fromkeys(photos))} | {held}.jpg | "
                  f"{k} | {g.count('obama')} / {g.count('biden')} | "
                  f"{np.percentile(genuine, 10):.3f} | {np.median(genuine):.3f} | "
                  f"{named} of {len(probes)} | {wrong} |", flush=True)
    print(f"open-set rule: {rec.rule} (the model's default)")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
