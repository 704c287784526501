"""Where recognition training keeps its checkpoints, in the core's one format
(``face_perception.training.checkpoint``): ``<temp_path>/checkpoints/checkpoint_<k>.pth`` per
saved iteration ``k``, pruning to the newest N, and the reader of the format these files had
before the core (``format: 1``).

The learning rate is a pure function of the iteration (``face_perception.training.schedule``),
so the iteration is the whole scheduler state; the batch order is a pure function of the
iteration too (``data.BatchOrder``), so it is the data position as well.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

from face_perception.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    read_checkpoint,
    remove_checkpoint,
)

KIND = "recognition"
# What a checkpoint says the run is; a resume must match every one of them.
IDENTITY = ("backbone", "network_head", "embedding_size", "num_classes", "input_size",
            "classes", "optimizer_name", "sample_rate")

__all__ = ["CheckpointError", "checkpoint_dir", "checkpoint_path", "read", "saved_iterations",
           "latest_iteration", "prune_checkpoints"]


def checkpoint_dir(temp_path: Union[str, os.PathLike]) -> Path:
    return Path(temp_path) / "checkpoints"


def checkpoint_path(temp_path: Union[str, os.PathLike], iteration: int) -> Path:
    return checkpoint_dir(temp_path) / f"checkpoint_{int(iteration)}.pth"


def read(path: Union[str, os.PathLike]) -> Checkpoint:
    """A recognition checkpoint of the core's format or of the one before it."""
    return read_checkpoint(path, KIND, legacy=_format_1)


def _format_1(state: dict) -> Optional[Checkpoint]:
    """Checkpoints written before the shared core: one flat dict with ``format: 1``."""
    if state.get("format") != 1:
        return None
    try:
        return Checkpoint(
            kind=KIND, epoch=0, step=int(state["iteration"]),
            models={"backbone": state["backbone_state"], "head": state["head_state"]},
            optimizer=state["optimizer"], rng=dict(state["rng"]),
            identity={k: state[k] for k in IDENTITY if k in state},
            extra={"validation": state.get("validation")})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"an incomplete training checkpoint (format 1): {exc!r} missing "
                              "or malformed") from None


def saved_iterations(temp_path: Union[str, os.PathLike]) -> List[int]:
    """Iterations of the ``checkpoint_<k>.pth`` files under ``temp_path``, ascending."""
    folder = checkpoint_dir(temp_path)
    found = []
    for p in folder.glob("checkpoint_*.pth") if folder.is_dir() else ():
        tail = p.stem[len("checkpoint_"):]
        if tail.isdigit():
            found.append(int(tail))
    return sorted(found)


def latest_iteration(temp_path: Union[str, os.PathLike], below: int) -> int:
    """The newest checkpoint's iteration below ``below`` (0 when there is none)."""
    return max((k for k in saved_iterations(temp_path) if k < below), default=0)


def prune_checkpoints(temp_path: Union[str, os.PathLike], keep: int) -> List[Path]:
    """Remove all but the ``keep`` newest checkpoints (``keep`` 0: keep all) with their sha256
    files; returns the removed checkpoints."""
    if not keep:
        return []
    removed = []
    for k in saved_iterations(temp_path)[:-keep]:
        path = checkpoint_path(temp_path, k)
        remove_checkpoint(path)
        removed.append(path)
    return removed
