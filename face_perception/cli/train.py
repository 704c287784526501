"""``face-perception train CONFIG.yaml [--set key=value ...]``: train a face recognition model
with a YAML config (every TrainConfig key, see docs/training.md); ``--print-config`` prints the
defaults. Start it under ``torchrun`` for several processes."""
from __future__ import annotations

import json
import os
from dataclasses import fields

from face_perception.cli import add_command
from face_perception.recognition.training.config import TrainConfig, load_config, parse_override


def register(sub) -> None:
    p = add_command(sub, "train", run_train,
                    help="train a face recognition model (YAML config, --set overrides)")
    p.add_argument("config", nargs="?", help="YAML config file (omit to use the defaults)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="overrides",
                   help="override one parameter (YAML value syntax); repeatable")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (the defaults without CONFIG) and exit")
    for f in fields(TrainConfig):
        p.add_argument(f"--{f.name.replace('_', '-')}", dest=f"flag_{f.name}", default=None,
                       metavar="VALUE", help="same as --set " + f.name + "=VALUE")


def run_train(args) -> int:
    """Train a face recognizer from a YAML config; --set key=value and plain flags (--lr 0.01)
    override it. Writes checkpoints, the resolved config (checkpoints/config.yaml) and the model
    folder (model/) under temp_path. See docs/training.md."""
    overrides = dict(parse_override(text) for text in args.overrides)
    for f in fields(TrainConfig):
        raw = getattr(args, f"flag_{f.name}")
        if raw is not None:
            overrides[f.name] = parse_override(f"{f.name}={raw}")[1]
    config = load_config(args.config, overrides)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    from face_perception.recognition.training import train

    stats = train(config)
    summary = {k: stats[k] for k in ("iterations", "train_loss", "train_accuracy",
                                     "best_val_accuracy", "best_metric", "best_val_score",
                                     "best_iteration", "model_folder", "best_model_folder",
                                     "images_per_s", "threads")}
    if stats.get("world_size", 1) == 1 or int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(summary, indent=2))
    return 0
