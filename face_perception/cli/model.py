"""``face-perception model``: bring your own recognizer, and look inside a model folder.

    face-perception model import SRC --format {insightface-onnx,arcface-torch,adaface,opendr}
                                     --out DIR [--name NAME] [--arch ir_50] [--threshold T]
    face-perception model info DIR [--json]

``import`` converts (or, for ONNX, checks and keeps) a model trained elsewhere into a model
folder (recognition/model_import; docs/models.md); ``info`` prints a folder's backbone.json.
"""
from __future__ import annotations

import argparse
import json

from face_perception.cli import add_command

FORMAT_HELP = ("insightface-onnx: an InsightFace ONNX recognizer (w600k_r50.onnx, ...); "
               "arcface-torch: an arcface_torch iresnet .pth; adaface: an AdaFace .ckpt; "
               "opendr: a folder written by OpenDR's FaceRecognitionLearner.save")


def register(subparsers) -> None:
    from face_perception.recognition.model_import import FORMATS

    parser = subparsers.add_parser(
        "model", help="import a recognizer trained elsewhere; show a model folder",
        description="Import face recognizers from other code bases into model folders, or "
                    "describe a model folder.")
    sub = parser.add_subparsers(dest="model_command", metavar="ACTION")
    sub.required = True

    p = add_command(sub, "import", _import,
                    "write a model folder from an InsightFace, arcface_torch, AdaFace or OpenDR "
                    "model")
    p.add_argument("src", metavar="SRC", help="the model file (an OpenDR folder for opendr)")
    p.add_argument("--format", required=True, choices=FORMATS, dest="fmt", help=FORMAT_HELP)
    p.add_argument("--out", required=True, metavar="DIR", help="new model folder to write")
    p.add_argument("--name", default=None,
                   help="model name (galleries are tagged with it; a checksum suffix is added)")
    p.add_argument("--arch", default=None,
                   help="architecture the file must hold, e.g. ir_50 (checked; default: read "
                        "from the file's layers)")
    p.add_argument("--threshold", type=float, default=None,
                   help="1:1 cosine threshold to record (default: the documented figure of "
                        "the format, docs/models.md)")

    p = sub.add_parser("info", help="print a model folder's metadata")
    p.add_argument("folder", metavar="DIR", help="a model folder or a pretrained name "
                                                 "(dlib_resnet)")
    p.add_argument("--json", action="store_true", help="print backbone.json as JSON")
    p.set_defaults(func=_info)


def _import(args: argparse.Namespace) -> int:
    """Convert SRC into the model folder --out (template, colour order, normalisation, embedding
    size and 1:1 threshold recorded in its backbone.json). The imported model names nobody until
    a gallery's open-set rule is calibrated with `face-perception gallery calibrate`."""
    from face_perception.open_set import CALIBRATE_COMMAND
    from face_perception.recognition.model_import import import_model
    from face_perception.recognition.model_meta import ModelMeta

    folder = import_model(args.src, args.fmt, args.out, name=args.name, arch=args.arch,
                          threshold=args.threshold)
    meta = ModelMeta.load(folder)
    print(f"imported {args.src} ({args.fmt}) into {folder}: model {meta.name}, "
          f"{meta.architecture}, {meta.embedding_size}-d, {meta.color_order.upper()} "
          f"(x - {meta.mean[0]:g}) / {meta.std[0]:g}, 1:1 threshold {meta.threshold:g}")
    calibrate = CALIBRATE_COMMAND.replace("MODEL_DIR", str(folder))
    print(f"  it names nobody until calibrated: {calibrate}")
    print(f"  licence: {meta.license}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from face_perception.recognition.model_meta import ModelMeta
    from face_perception.recognition.pretrained import resolve_model

    meta = ModelMeta.load(resolve_model(args.folder))
    if args.json:
        print(json.dumps(meta.to_dict(), indent=2))
        return 0
    files = ", ".join(f for f in (meta.weights_file, meta.onnx_file) if f)
    print(f"{args.folder}: model {meta.name} ({meta.architecture}), {meta.embedding_size}-d, "
          f"{meta.input_size[0]}x{meta.input_size[1]} chips ({meta.template_name}), "
          f"{meta.color_order.upper()} (x - {_triple(meta.mean)}) / {_triple(meta.std)}")
    print(f"  1:1 threshold {meta.threshold:g}; files: {files}")
    if meta.needs_open_set_calibration:
        print("  open-set rule: none until a gallery is calibrated (imported model)")
    print(f"  source: {meta.source or '-'}")
    print(f"  licence: {meta.license or '-'}")
    return 0


def _triple(values) -> str:
    return "[" + ", ".join(f"{float(v):g}" for v in values) + "]"
