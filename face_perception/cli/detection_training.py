"""``face-perception detector-train`` / ``detector-eval``: RetinaFace training and AP evaluation on
WIDER-format data, on the detection training core (``face_perception.detection.training``)."""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from face_perception.cli import add_command

# The seed learner's SGD defaults, which detector-train does not expose.
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4


def register(sub) -> None:
    train = add_command(sub, "detector-train", run_train,
                        help="train or fine-tune the RetinaFace face detector")
    train.add_argument("data", help="WIDER root (reads <root>/train/label.txt) or a label.txt")
    train.add_argument("--out", required=True, help="model folder to write")
    train.add_argument("--backbone", choices=["mnet", "resnet"], default="mnet")
    train.add_argument("--init", choices=["pretrained", "backbone", "scratch"],
                       default="pretrained",
                       help="start from the pretrained detector (default; offline for mnet), "
                            "from a pretrained backbone with new heads, or from random weights")
    train.add_argument("--model", help="start from this model folder instead (overrides --init)")
    train.add_argument("--epochs", type=int, default=10)
    train.add_argument("--lr", type=float, default=0.001)
    train.add_argument("--lr-steps", default="0", help="epochs where lr drops 10x, e.g. 8,12")
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--image-size", type=int, default=640, help="square training crop size")
    train.add_argument("--flip", action=argparse.BooleanOptionalAction, default=True,
                       help="random horizontal flips")
    train.add_argument("--val", help="validation data (WIDER root with val/ or a label.txt)")
    train.add_argument("--val-after", type=int, default=5, help="validate every N epochs")
    train.add_argument("--temp-path", default="", help="checkpoint folder (default: <out>.ckpt)")
    train.add_argument("--checkpoint-every", type=int, default=1, metavar="EPOCHS")
    train.add_argument("--resume", type=int, default=0, metavar="EPOCH",
                       help="resume exactly from the checkpoint of this epoch")
    train.add_argument("--device", default="cpu", help="cpu or cuda")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--threads", type=int, default=None,
                       help="torch threads (0: every usable core; default: torch's own)")
    train.add_argument("--logging-path", default="",
                       help="TensorBoard event files (loss, lr, images/s, val AP per epoch)")
    train.add_argument("--quiet", action="store_true")

    ev = add_command(sub, "detector-eval", run_eval,
                     help="AP and recall of a face detector on WIDER-format data")
    ev.add_argument("data", help="WIDER root or a label.txt")
    ev.add_argument("--split", default="val", help="split under a WIDER root (default val)")
    ev.add_argument("--model", default="pretrained",
                    help="model folder (from detector-train), an .onnx file, or "
                         "'pretrained' for the shipped mnet (default)")
    ev.add_argument("--pyramid", action=argparse.BooleanOptionalAction, default=False,
                    help="test-time image pyramid (0.5x, 1x, 1.5x)")
    ev.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False,
                    help="test-time horizontal flip")
    ev.add_argument("--subset", type=int, default=0, metavar="N",
                    help="evaluate a random subset of N images")
    ev.add_argument("--target-size", type=int, default=1024)
    ev.add_argument("--max-size", type=int, default=1980)
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")


def _starting_model(args, temp: str):
    """(backbone, model, pretrained batch norms, epochs trained, checkpoint to resume) of
    ``--resume`` / ``--model`` / ``--init``."""
    from face_perception.detection.model_folder import read_model_folder
    from face_perception.detection.training import checkpoint as ckpt
    from face_perception.detection.training import network

    backbone = args.backbone
    if args.resume:
        path = ckpt.checkpoint_path(temp, f"retinaface_{backbone}", args.resume)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint for epoch {args.resume} not found: {path} "
                                    f"(--resume {args.resume}, --temp-path {temp})")
        model, resume = ckpt.resume(path, backbone, args.seed, args.image_size)
        return backbone, model, resume.extra["pretrained_bn"], resume.epoch, resume
    if args.model:
        folder = read_model_folder(args.model)
        model, bn = network.trained_model(folder.backbone, args.seed, folder.state_dict(),
                                          folder.weights_path)
        return folder.backbone, model, bn, int(folder.meta.get("epochs_trained", 0)), None
    if args.init == "pretrained":
        state = network.pretrained_detector_state(backbone, Path(temp) / ".downloads")
        model, bn = network.trained_model(backbone, args.seed, state, f"pretrained {backbone}")
        return backbone, model, bn, 0, None
    imagenet = None
    if args.init == "backbone" and backbone == "resnet":
        Path(temp).mkdir(parents=True, exist_ok=True)
        imagenet = network.download_imagenet_backbone(Path(temp))
    model, bn = network.initial_model(backbone, args.seed, args.init == "scratch", imagenet)
    return backbone, model, bn, 0, None


def run_train(args) -> int:
    """Train RetinaFace on WIDER-format data (label.txt with boxes and 5 landmarks) and write a
    model folder: the model of `detect --model`, `detector-eval --model`, the Detector's and the
    node's model_path and RetinaFaceLearner.load(). See docs/detection_training.md."""
    from face_perception.detection.model_folder import write_model_folder
    from face_perception.detection.training import (
        EpochCount,
        TrainSettings,
        checkpoint_path,
        open_samples,
        train,
    )
    from face_perception.detection.training.validation import training_validation
    from face_perception.training.config import resolve_device

    samples = open_samples(args.data, "train")
    if not samples:
        raise ValueError(f"no training samples in {args.data}")
    val = open_samples(args.val, "val") if args.val else None
    out = Path(args.out)
    temp = args.temp_path or str(out.with_name(out.name + ".ckpt"))
    device = resolve_device(args.device)
    verbose = not args.quiet
    settings = TrainSettings(
        backbone=args.backbone, lr=args.lr, lr_steps=args.lr_steps, epochs=args.epochs,
        batch_size=args.batch_size, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
        image_size=args.image_size, seed=args.seed, flip=args.flip, device=device,
        log_after=0 if args.quiet else 20, checkpoint_after=args.checkpoint_every,
        val_after=args.val_after, threads=args.threads, logging_path=args.logging_path)
    backbone, model, pretrained_bn, epochs_trained, resume = _starting_model(args, temp)
    if backbone != settings.backbone:  # --model: the folder's backbone
        settings = dataclasses.replace(settings, backbone=backbone)
    model = model.to(device)
    epochs = EpochCount(epochs_trained)
    say = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    validate = training_validation(model, val, args.image_size, device) if val else None
    history, _ = train(model, samples, settings, pretrained_bn=pretrained_bn, resume=resume,
                       checkpoint_file=lambda n: checkpoint_path(temp, f"retinaface_{backbone}",
                                                                 n),
                       validate=validate, callbacks=[epochs],
                       say=say, verbose=verbose)
    write_model_folder(out, model.state_dict(), backbone=backbone,
                       training_image_size=args.image_size, epochs_trained=epochs.epochs,
                       optimizer_info={"lr": args.lr, "momentum": MOMENTUM,
                                       "weight_decay": WEIGHT_DECAY, "lr_steps": args.lr_steps,
                                       "batch_size": args.batch_size})
    if verbose:
        print(f"saved RetinaFace ({backbone}) to {out}", flush=True)
    print(json.dumps({"model": str(out), "epochs": epochs.epochs,
                      "loss": [round(v, 4) for v in history["loss"]],
                      "val": [{"epoch": e, **r} for e, r in history["val"]]}))
    return 0


def run_eval(args) -> int:
    """Average precision (IoU 0.5, VOC all-point) and recall, overall and per WIDER difficulty
    when split lists are present."""
    from face_perception.detection.detector import Detector
    from face_perception.detection.training import open_samples
    from face_perception.detection.training.data import random_subset
    from face_perception.detection.training.validation import (
        EVAL_NMS_THRESHOLD,
        EVAL_PYRAMID,
        EVAL_SCORE_THRESHOLD,
        evaluate_samples,
    )

    samples = open_samples(args.data, args.split)
    if args.subset > 0:
        samples = random_subset(samples, args.subset, seed=0)  # the learner's default seed
    common = dict(score_threshold=EVAL_SCORE_THRESHOLD, nms_threshold=EVAL_NMS_THRESHOLD,
                  target_size=args.target_size, max_size=args.max_size,
                  scales=list(EVAL_PYRAMID) if args.pyramid else None, flip=args.flip,
                  upscale=True, device=args.device)  # the seed's size rule enlarges small images
    if args.model == "pretrained":
        detector = Detector(backbone="mnet", backend="torch", **common)
    else:
        model = Path(args.model)
        backend = "onnx" if model.suffix.lower() == ".onnx" or _has_onnx(model) else "torch"
        detector = Detector(model_path=model, backend=backend, **common)
    result = evaluate_samples(detector, samples, verbose=not args.json)
    if args.json:
        print(json.dumps(result))
    return 0


def _has_onnx(folder: Path) -> bool:
    """A model folder with its ONNX export (what RetinaFaceLearner.load runs on)."""
    from face_perception.detection.model_folder import read_model_folder

    return folder.is_dir() and read_model_folder(folder).onnx_path is not None
