"""Training checkpoints for exact resume: model, head, optimizer, iteration, RNG and the run's
identity (backbone, head, classes), one ``checkpoint_<k>.pth`` per saved iteration ``k``.

Files are written atomically and read with ``torch.load(weights_only=True)``: plain tensors,
numbers, strings, lists and dicts only. The learning rate is a pure function of the iteration
(``loop.lr_at``), so the iteration is the whole scheduler state; the batch order is a pure
function of the iteration too (``data.BatchOrder``), so it is the data position as well.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import torch

from face_perception.files import load_torch_file

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable or belongs to another run."""


def checkpoint_dir(temp_path: Union[str, os.PathLike]) -> Path:
    return Path(temp_path) / "checkpoints"


def checkpoint_path(temp_path: Union[str, os.PathLike], iteration: int) -> Path:
    return checkpoint_dir(temp_path) / f"checkpoint_{int(iteration)}.pth"


def save_checkpoint(path: Union[str, os.PathLike], state: dict) -> Path:
    from face_perception.files import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, **state}, tmp)
    return Path(path)


def load_checkpoint(path: Union[str, os.PathLike], expect: dict) -> dict:
    """Read a checkpoint and check it belongs to this run: every key of ``expect``
    (backbone, network_head, embedding_size, num_classes, ...) must match."""
    path = Path(path)
    state = load_torch_file(path, CheckpointError, "a checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a face_perception training checkpoint")
    for key, want in expect.items():
        got = state.get(key)
        if got != want:
            raise CheckpointError(f"{path} holds {key}={got!r} but this run has {key}={want!r}: "
                                  "it is a checkpoint of another model")
    return state


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
