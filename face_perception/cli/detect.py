"""``face-perception detect``: run the RetinaFace Detector on image files.

Prints one JSON object per image (``--json``, JSON Lines) or a short summary, and writes
annotated copies to ``--out``. A file that cannot be read gets a one-line error and the others
are still processed; the exit code is 1 if any file failed.
"""
from __future__ import annotations

import argparse
import json
import sys

from face_perception.cli import add_command
from face_perception.cli.image_files import ImageFiles
from face_perception.cli.inference_options import add_inference_options, detector_from_args
from face_perception.detection.config import DETECTOR_BACKBONES


def run(args) -> int:
    """Detect faces with RetinaFace. Prints a summary, or JSON Lines with --json (one object per
    image: image, width, height, faces[box, score, landmarks]); --out writes annotated images."""
    from face_perception.rendering import draw_faces

    detector = detector_from_args(args, beside_embedder=False, backbone=args.backbone,
                                  model_path=args.model, score_threshold=args.threshold,
                                  nms_threshold=args.nms_threshold, target_size=args.target_size,
                                  max_size=args.max_size, scales=args.scales, flip=args.flip,
                                  max_faces=args.max_faces)
    files = ImageFiles("detect", args.images, args.out, tag="faces")
    if files.none_given():
        return 2
    for path, image, faces in files.each(detector.detect):
        record = {"image": str(path), "width": int(image.shape[1]),
                  "height": int(image.shape[0]), "faces": [f.to_dict() for f in faces]}
        files.write_annotated(path, record, draw_faces, image, faces)
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"{path}: {len(faces)} face(s)")
            for f in faces:
                x1, y1, x2, y2 = (round(float(v), 1) for v in f.box)
                print(f"  score {f.score:.3f}  box ({x1}, {y1}, {x2}, {y2})")
    return files.exit_code


def register(sub) -> None:
    p = add_command(sub, "detect", run, "detect faces (boxes, scores, 5 landmarks) in images")
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("--json", action="store_true", help="print one JSON object per image")
    p.add_argument("--out", metavar="DIR", help="write annotated images to this folder")
    add_inference_options(p)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--backbone", choices=DETECTOR_BACKBONES, default="mnet",
                   help="detector: RetinaFace mnet/resnet or YuNet-n (docs/detection.md)")
    p.add_argument("--model", metavar="PATH",
                   help="model folder written by detector-train (its backbone wins over "
                        "--backbone), or a .pth / .onnx file (default: the pretrained weights)")
    p.add_argument("--threshold", type=float, default=None,
                   help="score threshold (default: the backbone's, 0.5 RetinaFace, 0.87 YuNet)")
    p.add_argument("--nms-threshold", type=float, default=0.4, help="NMS IoU threshold (0.4)")
    p.add_argument("--target-size", type=int, default=640,
                   help="short side is scaled down to this many pixels (640)")
    p.add_argument("--max-size", type=int, default=1280,
                   help="long side is never above this many pixels (1280)")
    p.add_argument("--scales", type=float, nargs="+", metavar="S",
                   help="test-time pyramid factors, e.g. --scales 0.5 1 2")
    p.add_argument("--flip", action="store_true", help="also run on the mirrored image")
    p.add_argument("--max-faces", type=int, default=0, help="keep at most N faces (0: all)")


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    parser = argparse.ArgumentParser(prog="face-perception")
    register(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
