"""Training checkpoints for exact resume: model, head, optimizer, iteration, RNG and the run's
identity (backbone, head, classes), one ``checkpoint_<k>.pth`` per saved iteration ``k``.

Files are written atomically and read with ``torch.load(weights_only=True)``: plain tensors,
numbers, strings, lists and dicts only. The learning rate is a pure function of the
iteration (``schedule.learning_rate``), so the iteration is the whole scheduler state; the
batch order is a pure function of the iteration too (``data.BatchOrder``), so it is the data
position as well.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Union

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


def load_checkpoint(path: Union[str, os.PathLike], expect: dict,
                    defaults: Optional[dict] = None) -> dict:
    """Read a checkpoint and check it belongs to this run: every key of ``expect``
    (backbone, network_head, embedding_size, classes, ...) must match; ``defaults`` stand in
    for keys that checkpoints of earlier versions lack."""
    path = Path(path)
    state = load_torch_file(path, CheckpointError, "a checkpoint")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a face_perception training checkpoint")
    for key, want in expect.items():
        got = state.get(key, (defaults or {}).get(key))
        if got != want:
            if key == "classes" and isinstance(got, list) and len(got) == len(want):
                diff = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
                raise CheckpointError(
                    f"{path} was trained on other classes: class {diff} is {got[diff]!r} there "
                    f"but {want[diff]!r} in this dataset (a renamed or replaced identity "
                    "folder shifts every class index)")
            raise CheckpointError(f"{path} holds {key}={_short(got)} but this run has "
                                  f"{key}={_short(want)}: it is a checkpoint of another model")
    return state


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "...]"


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
    """Remove all but the ``keep`` newest checkpoints (``keep`` 0: keep all); returns the
    removed files."""
    if not keep:
        return []
    removed = []
    for k in saved_iterations(temp_path)[:-keep]:
        path = checkpoint_path(temp_path, k)
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
