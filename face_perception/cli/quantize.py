"""``face-perception quantize``: make, guard and record the int8 graph of a model folder.

The int8 graph and its record (fp32 checksum, calibration images, guard figures) are written
into the model folder, where ``--backend onnx-int8`` (library, CLI, nodes) picks them up. A
graph that fails its guard is refused with the figures (exit code 2) and nothing is written.
"""
from __future__ import annotations

import argparse
import json

from face_perception.cli import add_command


def register(subparsers) -> None:
    p = add_command(subparsers, "quantize", run,
                    "make the guarded int8 ONNX graph of an embedder or detector")
    p.add_argument("kind", choices=["embedder", "detector"])
    p.add_argument("--model", default=None,
                   help="embedder: a name (default dlib_resnet) or model folder; detector: a "
                        "model folder from detector-train (default: the pretrained mnet, "
                        "whose int8 graph stays in the cache)")
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="folder of photos with faces (default: the shipped photos)")
    p.add_argument("--target-size", type=int, default=640, help="detector size policy (640)")
    p.add_argument("--max-size", type=int, default=1280, help="detector size policy (1280)")


def run(args: argparse.Namespace) -> int:
    """Quantize a model to int8 (onnxruntime static QDQ) calibrated on real images, check it against
    fp32 (embedder: cosine >= 0.99 and no changed pair decision; detector: same faces, IoU >=
    0.9, landmarks <= 2 px) and record it in the model folder."""
    from face_perception.onnx.quantization import calibration_images, record_int8

    images = calibration_images(args.calibration)
    if args.kind == "embedder":
        from face_perception.recognition import Embedder
        from face_perception.recognition.int8 import int8_onnx_for

        fp32 = Embedder(args.model or "dlib_resnet", backend="onnx")
        int8 = int8_onnx_for(fp32, images)
        folder, fp32_path = fp32.folder, fp32.onnx_path
    else:
        from face_perception.detection import Detector
        from face_perception.detection.detector import int8_onnx_for

        fp32 = Detector(backend="onnx", model_path=args.model, target_size=args.target_size,
                        max_size=args.max_size)
        fp32_path = fp32.onnx_file()
        int8 = int8_onnx_for(fp32_path, fp32.settings(), images)
        folder = fp32.model_folder()
    if folder is not None:
        int8 = record_int8(folder, int8, fp32_path)
    guard = json.loads((folder / "int8.json").read_text())["guard"] if folder is not None \
        else json.loads(int8.with_suffix(".guard.json").read_text())["guard"]
    print(f"int8 graph: {int8} (calibrated on {len(images)} images)")
    print("guard: " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in guard.items()))
    return 0
