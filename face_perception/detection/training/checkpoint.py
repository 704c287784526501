"""Detection checkpoints in the core's one format (``face_perception.training.checkpoint``):
``<folder>/<name>-<epoch:04d>.pth`` with its ``.sha256``, holding the network, SGD state,
epoch and iteration, RNG state, the batch norms that came pretrained and the run's history;
and the reader of the format these files had before the core."""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Union

from face_perception.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    check_identity,
    read_checkpoint,
    rng_state,
    save_checkpoint,
)

KIND = "detection"
LEGACY_FORMAT = "face_perception.retinaface.checkpoint"  # version 1, before the shared core


def checkpoint_path(folder: Union[str, Path], name: str, epoch: int) -> Path:
    """``<folder>/<name>-<epoch:04d>.pth``, next to its ``.sha256`` sidecar."""
    return Path(folder or ".") / f"{name}-{epoch:04d}.pth"


def save(path: Path, *, backbone: str, epoch: int, iteration: int, model, optimizer,
         pretrained_bn: set[str], history: dict, seed: int, image_size: int,
         schedule: dict) -> Path:
    return save_checkpoint(path, Checkpoint(
        kind=KIND, epoch=epoch, step=iteration, models={"model": model.state_dict()},
        optimizer=optimizer.state_dict(), identity={"backbone": backbone}, rng=rng_state(),
        scheduler=schedule,
        extra={"pretrained_bn": sorted(pretrained_bn), "history": json.dumps(history),
               "seed": seed, "image_size": image_size}))


def load(path: Path, backbone: str, seed: int, image_size: int) -> Checkpoint:
    """Read a checkpoint after its checks (sha256, tensors only); refuses another backbone and
    warns when ``seed``/``image_size`` differ from the run that wrote it. ``extra`` holds the
    history (a dict) and the pretrained batch norms (a set)."""
    checkpoint = read_checkpoint(path, KIND, legacy=_version_1)
    check_identity(checkpoint, {"backbone": backbone})
    extra = checkpoint.extra
    for key, value in (("seed", seed), ("image_size", image_size)):
        if extra.get(key) != value:
            warnings.warn(f"resuming {path} with {key}={value} (checkpoint: {extra.get(key)}): "
                          "the run will not repeat the original one",
                          RuntimeWarning, stacklevel=4)
    try:
        history = json.loads(extra["history"])
        history["val"] = [tuple(v) for v in history["val"]]
        extra["history"] = history
        extra["pretrained_bn"] = set(extra["pretrained_bn"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} is an incomplete detection checkpoint: {exc!r}") from None
    return checkpoint


def resume(path: Path, backbone: str, seed: int, image_size: int):
    """(network with the checkpoint's weights, the checkpoint) to continue a run from: the
    checkpoint's ``extra['pretrained_bn']`` are its frozen batch norms."""
    from face_perception.detection.training.network import trained_model

    checkpoint = load(path, backbone, seed, image_size)
    model, _ = trained_model(backbone, seed, checkpoint.models["model"], path)
    return model, checkpoint


def _version_1(state: dict):
    """A checkpoint of RetinaFaceLearner before the shared core (``torch_rng`` only, the
    iteration not stored: it is recomputed from the epoch on resume)."""
    if state.get("format") != LEGACY_FORMAT or state.get("version") != 1:
        return None
    try:
        return Checkpoint(
            kind=KIND, epoch=int(state["epoch"]), step=-1, models={"model": state["model"]},
            optimizer=state["optimizer"], identity={"backbone": state["backbone"]},
            rng={"torch": state["torch_rng"]},
            extra={k: state[k] for k in ("pretrained_bn", "history", "seed", "image_size")})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"an incomplete RetinaFace checkpoint (version 1): {exc!r} "
                              "missing") from None
