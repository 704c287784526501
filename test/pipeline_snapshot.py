"""Everything the per-frame pipeline outputs on the test photos and sequences, as JSON, so that a
refactor can be compared before/after: boxes, landmarks, scores, track ids, names, confidences
(``face-perception video`` JSON Lines, ``face-perception bag`` output topics, tracking on and off)
and a checksum of every face's embedding.

    python -m test.pipeline_snapshot OUT.json      # from the repository root
    python -m test.pipeline_snapshot --compare A.json B.json
"""
from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np


def _sequences(cut):
    from test.tracking_scenes import scene

    return {
        "crossing": scene(cut, 30, lambda i: [("obama", 80 + 15 * i, 220, 100),
                                               ("biden", 560 - 15 * i, 260, 100)]),
        "odd_frame": scene(cut, 34, lambda i: [("biden" if i == 20 else "obama",
                                                100 + 8 * i, 240, 110)]),
        "stranger_noise": scene(cut, 36, lambda i: [
            ("obama", 150, 220, 100), ("obama2" if i % 6 == 3 else "biden", 470, 240, 100)]),
    }


def _det_dict(det) -> dict:
    r = det.results
    return {"id": det.id, "cx": round(det.bbox.center.position.x, 3),
            "cy": round(det.bbox.center.position.y, 3), "w": round(det.bbox.size_x, 3),
            "h": round(det.bbox.size_y, 3),
            "results": [(x.hypothesis.class_id, round(x.hypothesis.score, 4)) for x in r]}


def snapshot() -> dict:
    from face_perception.bag import rosbag_io
    from face_perception.cli import main
    from face_perception.data.sample_photos import sample_photos_dir
    from face_perception.detection import Detector
    from face_perception.gallery import Gallery
    from face_perception.imageio import read_image_bgr
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.tracking import FaceTracker, TrackingPipeline
    from test.tracking_scenes import Cutouts

    photos = sample_photos_dir()
    detector = Detector()
    emb = Embedder("dlib_resnet", backend="onnx")
    out: dict = {"photos": {}, "sequences": {}}
    gallery = Gallery(emb.meta.name, emb.meta.embedding_size)
    for person in ("obama", "biden"):
        img = read_image_bgr(photos / f"{person}.jpg")
        gallery.add(person, emb.embed_faces(img, detector.detect(img)[:1]))
    recognizer = Recognizer(emb, gallery, detector=detector)
    for path in sorted(photos.glob("*.jpg")):
        img = read_image_bgr(path)
        faces = detector.detect(img)
        pipe = TrackingPipeline(recognizer, None)
        tracked = pipe.update(img, faces, 0)
        vecs = recognizer.embed(img, faces)
        out["photos"][path.name] = {
            "faces": [t.to_dict() for t in tracked],
            "embeddings": [np.round(v, 5).tolist() for v in vecs]}
    cut = Cutouts(photos, detector)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        gallery.save(tmp / "people.json")
        for name, frames in _sequences(cut).items():
            seq: dict = {}
            for tracking in (True, False):
                pipe = TrackingPipeline(recognizer, FaceTracker() if tracking else None)
                outs = [pipe.update(f.image, detector.detect(f.image), f.stamp_ns)
                        for f in frames]
                seq[f"pipeline_tracking_{tracking}"] = [[t.to_dict() for t in o] for o in outs]
                seq[f"pipeline_tracking_{tracking}_embeddings"] = pipe.embeddings
            video = tmp / f"{name}.avi"
            writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0,
                                     (640, 480))
            for f in frames:
                writer.write(f.image)
            writer.release()
            for extra in ([], ["--no-tracking"]):
                js = tmp / f"{name}{len(extra)}.jsonl"
                main(["video", str(video), "--gallery", str(tmp / "people.json"), "--out",
                      str(tmp / f"{name}{len(extra)}.mp4"), "--json", str(js),
                      "--no-progress"] + extra)
                seq[f"video{extra}"] = [json.loads(x) for x in js.read_text().splitlines()]
            store = rosbag_io.typestore()
            bag = tmp / f"{name}_in"
            w = rosbag_io.open_writer(bag, "mcap")
            conn = w.add_connection("/cam/image", rosbag_io.IMAGE, typestore=store)
            for f in frames:
                msg = rosbag_io.image_message(f.image, rosbag_io.header(f.stamp_ns, "cam"))
                w.write(conn, f.stamp_ns, store.serialize_cdr(msg, rosbag_io.IMAGE))
            w.close()
            for extra in ([], ["--no-tracking"]):
                dest = tmp / f"{name}_out{len(extra)}"
                main(["bag", str(bag), "--image-topic", "/cam/image", "--gallery",
                      str(tmp / "people.json"), "--output", str(dest), "--no-progress",
                      "--annotated"] + extra)
                from rosbags.rosbag2 import Reader

                topics: dict = {}
                with Reader(dest) as reader:
                    for c, _, raw in reader.messages():
                        m = store.deserialize_cdr(raw, c.msgtype)
                        if c.msgtype.endswith("Detection2DArray"):
                            topics.setdefault(c.topic, []).append(
                                [_det_dict(d) for d in m.detections])
                        elif c.topic.endswith("/image") and "faces" in c.topic:
                            topics.setdefault(c.topic, []).append(
                                hashlib.sha256(bytes(m.data)).hexdigest()[:16])
                seq[f"bag{extra}"] = topics
            out["sequences"][name] = seq
    return out


def compare(a: dict, b: dict, path: str = "") -> list:
    """Differences between two snapshots (floats to 1e-4), as readable lines."""
    diffs = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                diffs.append(f"{path}/{k}: only in {'B' if k not in a else 'A'}")
            else:
                diffs += compare(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diffs += compare(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        if a is None or b is None or abs(float(a) - float(b)) > 1e-4:
            diffs.append(f"{path}: {a} != {b}")
    elif a != b:
        diffs.append(f"{path}: {a!r} != {b!r}")
    return diffs


def count_leaves(x) -> int:
    if isinstance(x, dict):
        return sum(count_leaves(v) for v in x.values())
    if isinstance(x, list):
        return sum(count_leaves(v) for v in x)
    return 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        a, b = (json.loads(Path(p).read_text()) for p in sys.argv[2:])
        d = compare(a, b)
        print(f"{count_leaves(a)} values compared, {len(d)} differ")
        print("\n".join(d[:50]))
        raise SystemExit(1 if d else 0)
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    Path(sys.argv[1]).write_text(json.dumps(snapshot()))
    print(f"wrote {sys.argv[1]}")
