"""``face-perception detector-train`` / ``detector-eval``: RetinaFace training and AP evaluation on
WIDER-format data, through ``RetinaFaceLearner``."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path


def register(sub) -> None:
    train = sub.add_parser(
        "detector-train", help="train or fine-tune the RetinaFace face detector",
        description="Train RetinaFace on WIDER-format data (label.txt with boxes and 5 landmarks) "
                    "and write a model folder: the model of `detect --model`, "
                    "`detector-eval --model`, the Detector's and the node's model_path and "
                    "RetinaFaceLearner.load(). See docs/detection_training.md.")
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
    train.add_argument("--quiet", action="store_true")
    train.set_defaults(func=run_train)

    ev = sub.add_parser(
        "detector-eval", help="AP and recall of a face detector on WIDER-format data",
        description="Average precision (IoU 0.5, VOC all-point) and recall, overall and per "
                    "WIDER difficulty when split lists are present.")
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
    ev.set_defaults(func=run_eval)


def _dataset(path: str, split: str):
    from face_perception.detection.wider import WiderFaceDataset

    p = Path(path)
    if p.is_file():
        return WiderFaceDataset.from_label_file(p)
    if not p.exists():
        raise FileNotFoundError(f"data not found: {p}")
    return WiderFaceDataset(p, splits=[split])


def _learner(backbone: str, device: str, **kw):
    from face_perception.learners.retinaface import RetinaFaceLearner

    return RetinaFaceLearner(backbone=backbone, device=device, **kw)


def run_train(args) -> int:
    train = _dataset(args.data, "train")
    val = _dataset(args.val, "val") if args.val else None
    out = Path(args.out)
    temp = args.temp_path or str(out.with_name(out.name + ".ckpt"))
    learner = _learner(args.backbone, args.device, lr=args.lr, lr_steps=args.lr_steps,
                       batch_size=args.batch_size, epochs=args.epochs, flip=args.flip,
                       val_after=args.val_after, temp_path=temp,
                       checkpoint_after_iter=args.checkpoint_every,
                       checkpoint_load_iter=args.resume, image_size=args.image_size,
                       seed=args.seed, log_after=0 if args.quiet else 20)
    verbose = not args.quiet
    # With --resume the checkpoint holds the weights; otherwise pick the starting point.
    if not args.resume and args.model:
        learner.load(args.model, verbose=verbose)
    elif not args.resume and args.init == "pretrained":
        with tempfile.TemporaryDirectory() as tmp:
            learner.load(learner.download(tmp, mode="pretrained", verbose=verbose),
                         verbose=verbose)
    learner.image_size = args.image_size  # load() set the folder's training size
    stats = learner.fit(train, val_dataset=val, from_scratch=args.init == "scratch",
                        silent=args.quiet, verbose=verbose)
    learner.save(out, verbose=verbose)
    print(json.dumps({"model": str(out), "epochs": stats["epochs"],
                      "loss": [round(v, 4) for v in stats["loss"]],
                      "val": [{"epoch": e, **r} for e, r in stats["val"]]}))
    return 0


def run_eval(args) -> int:
    data = _dataset(args.data, args.split)
    learner = _learner("mnet", args.device)
    if args.model == "pretrained":
        with tempfile.TemporaryDirectory() as tmp:
            learner.load(learner.download(tmp, mode="pretrained", verbose=False), verbose=False)
    else:
        learner.load(args.model, verbose=False)
    result = learner.eval(data, verbose=not args.json, use_subset=args.subset > 0,
                          subset_size=args.subset, pyramid=args.pyramid, flip=args.flip,
                          target_size=args.target_size, max_size=args.max_size)
    if args.json:
        print(json.dumps(result))
    return 0
