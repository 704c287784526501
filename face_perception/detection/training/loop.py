"""The RetinaFace training loop on the shared core (``face_perception.training``): SGD with the
core's step schedule (lr / 10 at each ``lr_steps`` epoch), frozen batch norms, and the
per-epoch callbacks: checkpoints (exact resume) and validation."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

from face_perception.detection.augment import TrainTransform
from face_perception.detection.config import get_config
from face_perception.detection.training import checkpoint as ckpt
from face_perception.detection.training.data import TrainSet, collate
from face_perception.detection.training.network import (
    FreezeBN,
    set_train_mode,
    trainable_parameters,
)
from face_perception.detection.wider import WiderSample
from face_perception.training.callbacks import (
    Callback,
    Callbacks,
    Checkpointing,
    Reporting,
    RunState,
    Validation,
)
from face_perception.training.checkpoint import Checkpoint, set_rng_state
from face_perception.training.config import make_optimizer, process_threads, set_lr
from face_perception.training.progress import Progress
from face_perception.training.schedule import step_lr


def parse_lr_steps(lr_steps: Union[str, Sequence[int]]) -> list[int]:
    """'55,68,80' -> [55, 68, 80]; steps <= 0 (the seed's default '0') mean no decay."""
    if isinstance(lr_steps, str):
        parts = [p.strip() for p in lr_steps.split(",") if p.strip()]
        try:
            steps = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"lr_steps must be comma-separated epoch numbers like '55,68,80', got "
                f"{lr_steps!r}") from None
    else:
        steps = [int(s) for s in lr_steps]
    return sorted(s for s in steps if s > 0)


@dataclass
class TrainSettings:
    """Hyper-parameters of one run, checked here for the learner and the CLI alike;
    ``image_size`` None is the backbone's training size."""

    backbone: str
    lr: float
    lr_steps: list[int]
    epochs: int
    batch_size: int
    momentum: float
    weight_decay: float
    image_size: Optional[int]
    seed: int
    shuffle: bool = True
    flip: bool = False
    num_workers: int = 0
    freeze_bn: FreezeBN = "auto"
    device: str = "cpu"
    log_after: int = 0
    checkpoint_after: int = 0
    val_after: int = 0
    threads: Optional[int] = None  # torch threads (0: the usable cores); None: left as they are
    logging_path: str = ""         # TensorBoard event files (per epoch); '' = off

    def __post_init__(self) -> None:
        from face_perception.detection.model_folder import BACKBONES

        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {list(BACKBONES)}, got "
                             f"{self.backbone!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if int(self.epochs) < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        for name in ("checkpoint_after", "val_after", "log_after", "num_workers", "seed"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
            setattr(self, name, int(getattr(self, name)))
        if self.freeze_bn not in ("auto", True, False):
            raise ValueError(f"freeze_bn must be 'auto', True or False, got "
                             f"{self.freeze_bn!r}")
        self.image_size = int(self.image_size or get_config(self.backbone)["image_size"])
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        self.lr, self.momentum = float(self.lr), float(self.momentum)
        self.weight_decay = float(self.weight_decay)
        self.batch_size, self.epochs = int(self.batch_size), int(self.epochs)
        self.lr_steps = parse_lr_steps(self.lr_steps)
        self.shuffle, self.flip = bool(self.shuffle), bool(self.flip)
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or int(self.threads) != self.threads
                                         or self.threads < 0):
            raise ValueError(f"threads must be a non-negative integer (0 = every core), got "
                             f"{self.threads!r}")


def train(model, samples: list[WiderSample], settings: TrainSettings, *,
          pretrained_bn: set[str], resume: Optional[Checkpoint] = None,
          checkpoint_file: Optional[Callable[[int], Path]] = None,
          validate: Optional[Callable[[int], Optional[dict]]] = None,
          callbacks: Sequence[Callback] = (), say: Callable[..., None] = lambda *a: None,
          verbose: bool = True) -> tuple[dict, int]:
    """Train ``model`` (already on ``settings.device``) from epoch 0 or from ``resume`` (a
    ``checkpoint.load`` result) up to ``settings.epochs``; returns the history ``{"loss",
    "loss_parts", "lr", "val"}`` and the number of iterations done since epoch 0.

    After each epoch, in order: ``callbacks``, a checkpoint every ``checkpoint_after`` epochs
    (``checkpoint_file(n)``), then every ``val_after`` epochs ``validate(n)``, whose non-None
    result joins ``history["val"]``. The model is left in eval mode.
    """
    import torch

    from face_perception.detection.loss import MultiBoxLoss
    from face_perception.detection.priors import prior_boxes_for

    s = settings
    if s.threads is not None:
        from face_perception.threads import set_torch_threads

        set_torch_threads(process_threads(s.threads))
    cfg = get_config(s.backbone)
    optimizer = make_optimizer("sgd", trainable_parameters(model, s.backbone, s.freeze_bn,
                                                           pretrained_bn),
                               s.lr, momentum=s.momentum, weight_decay=s.weight_decay)
    start_epoch, history = 0, {"loss": [], "loss_parts": [], "lr": [], "val": []}
    if resume is not None:
        optimizer.load_state_dict(resume.optimizer)
        set_rng_state(resume.rng)
        start_epoch, history = resume.epoch, resume.extra["history"]
    # TensorBoard only: the run's messages go through ``say``
    progress = Progress(s.logging_path, s.epochs, start_epoch, silent=True, bar=False)
    train_set = TrainSet(samples, TrainTransform(s.image_size, flip=s.flip), s.seed)
    priors = torch.from_numpy(
        prior_boxes_for(cfg, s.image_size, s.image_size).copy()).to(s.device)
    criterion = MultiBoxLoss(cfg["variance"], loc_weight=cfg["loc_weight"])
    run = RunState(total=s.epochs, epoch=start_epoch, stats=history,
                   step=start_epoch * ((len(samples) + s.batch_size - 1) // s.batch_size))

    def save(epoch: int) -> Path:
        return ckpt.save(checkpoint_file(epoch), backbone=s.backbone, epoch=epoch,
                         iteration=run.step, model=model, optimizer=optimizer,
                         pretrained_bn=pretrained_bn, history=history, seed=s.seed,
                         image_size=s.image_size,
                         schedule={"schedule": "step", "lr": s.lr, "stages": s.lr_steps})

    def evaluate(epoch: int) -> Optional[dict]:
        result = validate(epoch)
        if result is not None:
            history["val"].append((epoch, result))
            progress.scalars(epoch, {"ap": result["ap"], "recall": result["recall"]}, "val/")
            say(f"epoch {epoch}: val AP {result['ap']:.4f} recall {result['recall']:.4f}")
        return result

    every = [Reporting(progress, {"loss": "loss", "lr": "lr"}, unit="epoch"), *callbacks]
    if checkpoint_file is not None:
        every.append(Checkpointing(s.checkpoint_after, "epoch", save))
    if validate is not None:
        every.append(Validation(s.val_after, "epoch", evaluate))
    hooks = Callbacks(every)
    try:
        for epoch in range(start_epoch, s.epochs):
            lr = step_lr(s.lr, s.lr_steps, epoch)
            set_lr(optimizer, lr)
            train_set.epoch = epoch
            order = (np.random.default_rng([s.seed, epoch]).permutation(len(samples))
                     if s.shuffle else np.arange(len(samples)))
            loader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(train_set, order.tolist()), batch_size=s.batch_size,
                shuffle=False, num_workers=s.num_workers, collate_fn=collate)
            set_train_mode(model, s.freeze_bn, pretrained_bn)
            progress.restart_clock()  # images/s counts the epoch's training only
            sums = {"total": 0.0, "loc": 0.0, "conf": 0.0, "landmarks": 0.0}
            count, started = 0, time.monotonic()
            for images, targets in loader:
                images = images.to(s.device)
                loss, parts = criterion(model(images), priors, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                run.step += 1
                count += 1
                sums["total"] += float(loss.detach())
                for key in ("loc", "conf", "landmarks"):
                    sums[key] += parts[key]
                if verbose and s.log_after and run.step % s.log_after == 0:
                    say(f"epoch {epoch + 1}/{s.epochs} iter {run.step}: loss "
                        f"{float(loss.detach()):.4f} (loc {parts['loc']:.3f} conf "
                        f"{parts['conf']:.3f} landmarks {parts['landmarks']:.3f}) lr {lr:g}")
            mean = {k: v / max(count, 1) for k, v in sums.items()}
            history["loss_parts"].append(mean)
            run.epoch, run.images = epoch + 1, len(order)
            run.scalars = {"loss": mean["total"], "lr": lr}
            say(f"epoch {epoch + 1}/{s.epochs}: mean loss {mean['total']:.4f} "
                f"({time.monotonic() - started:.1f} s)")
            hooks.on_epoch_end(run)
        hooks.on_train_end(run)
    finally:
        progress.close()
    model.eval()
    return history, run.step


class EpochCount(Callback):
    """The epochs a model has been trained for: ``epochs`` (where it started) until the run
    finishes an epoch, then that epoch."""

    def __init__(self, epochs: int):
        self.epochs = int(epochs)

    def on_epoch_end(self, run: RunState) -> None:
        self.epochs = run.epoch
