"""The inference options every model-running command shares: backend, int8 calibration, threads.

``--backend onnx-int8`` runs the guarded int8 graphs. In commands that detect and recognise, it
applies to the embedder while the detector stays fp32 onnx (its int8 graph fails the guard on
the shipped photos, docs/detection.md); ``detect`` tries the int8 detector and reports the
refusal with the figures.
"""
from __future__ import annotations

import argparse

from face_perception.detection.config import DETECTOR_BACKBONES
from face_perception.devices import BACKENDS


def add_inference_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=BACKENDS, default="onnx",
                   help="inference backend (default: onnx); onnx-int8: guarded int8 graphs "
                        "(docs/recognition.md#int8)")
    p.add_argument("--calibration", metavar="DIR", default=None,
                   help="images calibrating onnx-int8 (default: the model folder's recorded "
                        "int8 graph, else the shipped photos)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="onnxruntime intra-op threads (default: every core)")


def embedder_kwargs(args: argparse.Namespace) -> dict:
    """Embedder keyword arguments of the shared options."""
    return {"backend": args.backend, "device": args.device, "calibration": args.calibration,
            "num_threads": args.threads}


def detector_kwargs(args: argparse.Namespace, beside_embedder: bool = True) -> dict:
    """Detector keyword arguments of the shared options (see the module docstring)."""
    from face_perception.recognition.int8 import detector_backend_for

    backend = detector_backend_for(args.backend) if beside_embedder else args.backend
    kwargs = {"backend": backend, "device": args.device, "num_threads": args.threads}
    if backend == "onnx-int8":
        kwargs["calibration"] = args.calibration
    return kwargs


def embedder_from_args(args: argparse.Namespace):
    """The Embedder of --model and the shared options."""
    from face_perception.recognition import Embedder

    return Embedder(args.model, **embedder_kwargs(args))


def detector_from_args(args: argparse.Namespace, beside_embedder: bool = True, **settings):
    """The Detector of the shared options and the command's own ``settings`` (score threshold,
    sizes, ...)."""
    from face_perception.detection import Detector

    return Detector(**detector_kwargs(args, beside_embedder), **settings)


def add_frame_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that run the whole frame pipeline on a stream of frames
    (bag, video): inference, detector, embedding model, open-set rule, flip."""
    add_inference_options(p)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--backbone", choices=DETECTOR_BACKBONES, default="mnet",
                   help="detector: RetinaFace mnet/resnet or YuNet-n (docs/detection.md)")
    p.add_argument("--score-threshold", type=float, default=None,
                   help="detector score threshold (default: the backbone's, 0.5 / YuNet 0.87)")
    p.add_argument("--model", default="dlib_resnet", help="embedding model name or folder")
    add_open_set_options(p)
    p.add_argument("--flip", action="store_true",
                   help="embed each face and its mirror image, average the two "
                   "(docs/open_set.md#flip)")


def frame_parts_from_args(args: argparse.Namespace, **detector_settings):
    """(Detector, Recognizer or None without --gallery) of the add_frame_options options."""
    detector = detector_from_args(args, backbone=args.backbone,
                                  score_threshold=args.score_threshold, **detector_settings)
    recognizer = recognizer_from_args(args, detector)
    if recognizer is not None and args.flip:
        recognizer.embedder.flip = True
    return detector, recognizer


def add_open_set_options(p: argparse.ArgumentParser) -> None:
    """--threshold / --margin: the open-set rule a name needs (docs/open_set.md)."""
    p.add_argument("--threshold", type=float, default=None,
                   help="open-set threshold: similarity a name needs (default: the gallery's "
                        "calibrated one, else the model's, 0.93 for dlib_resnet)")
    p.add_argument("--margin", type=float, default=None,
                   help="lead over the second-best identity a name needs (default: the "
                        "gallery's calibrated one, else the model's, 0.03 for dlib_resnet)")


def recognizer_settings(args: argparse.Namespace) -> dict:
    """The options as face_perception.pipeline.build settings (the nodes' parameter names)."""
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        raise ValueError(f"--threshold is the cosine similarity a name needs, in [0, 1] (a "
                         f"negative one would name strangers), got {args.threshold}")
    if args.margin is not None and args.margin < 0:
        raise ValueError(f"--margin must be >= 0, got {args.margin}")
    return {"model": args.model, **embedder_kwargs(args), "gallery_path": args.gallery or "",
            "threshold": args.threshold, "margin": args.margin}


def recognizer_from_args(args: argparse.Namespace, detector):
    """The Recognizer of --gallery, --model and the open-set options (None without --gallery);
    a missing gallery, or one of another model, is refused by Gallery.load."""
    if not args.gallery:
        return None
    from face_perception.pipeline import build_recognizer

    return build_recognizer(recognizer_settings(args), detector=detector,
                            require_gallery=True).recognizer
