"""Training checkpoints, one format for detection and recognition: the models' and the
optimizer's state, the position (epoch, step), the schedule, the RNG state of python, numpy
and torch, what the run is (``identity``: checked on resume) and the loop's own ``extra``.

A file is written atomically with a ``<file>.sha256`` sidecar; reading checks the sidecar
when it is there (a checkpoint copied alone still loads) and loads with
``weights_only=True``: plain tensors, numbers, strings, lists and dicts only, never pickled
code. Checkpoints of the formats each side wrote before this one are read through the
``legacy`` converter the caller passes.
"""
from __future__ import annotations

import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from face_perception.files import atomic_write_bytes, atomic_write_text, sha256_bytes, sha256_file

FORMAT = "face_perception.training.checkpoint"
VERSION = 2

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint that is damaged, unreadable, of another kind or of another run."""


@dataclass
class Checkpoint:
    """The state a run needs to continue exactly where it was saved."""

    kind: str                 # 'detection' or 'recognition'
    epoch: int                # epochs done
    step: int                 # optimizer steps (iterations) done
    models: dict              # {name: state_dict}
    optimizer: dict
    identity: dict            # what the run is (backbone, classes, ...): must match on resume
    rng: dict = field(default_factory=dict)
    scheduler: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    path: Optional[Path] = None


def sidecar_path(path: PathLike) -> Path:
    return Path(str(path) + ".sha256")


def save_checkpoint(path: PathLike, checkpoint: Checkpoint) -> Path:
    """Write ``checkpoint`` to ``path`` and its sha256 to ``<path>.sha256`` (both atomic)."""
    path = Path(path)
    state = {"format": FORMAT, "version": VERSION, "kind": checkpoint.kind,
             "epoch": int(checkpoint.epoch), "step": int(checkpoint.step),
             "models": checkpoint.models, "optimizer": checkpoint.optimizer,
             "identity": checkpoint.identity, "rng": checkpoint.rng,
             "scheduler": checkpoint.scheduler, "extra": checkpoint.extra}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    atomic_write_text(sidecar_path(path), sha256_bytes(data) + "\n")
    return path


def read_checkpoint(path: PathLike, kind: str,
                    legacy: Optional[Callable[[dict], Optional[Checkpoint]]] = None
                    ) -> Checkpoint:
    """The checkpoint at ``path`` after its checks: sha256 (when the sidecar is there),
    ``weights_only`` loading, the format and the kind. ``legacy(state)`` converts a file of an
    earlier format (None: not one it knows)."""
    from face_perception.files import load_torch_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    side = sidecar_path(path)
    if side.is_file():
        words = side.read_text().split()
        expected = words[0].lower() if words else ""
        got = sha256_file(path)
        if got != expected:
            raise CheckpointError(f"checksum mismatch for {path} (truncated or modified): "
                                  f"expected {expected or 'nothing'} ({side}), got {got}")
    state = load_torch_file(path, CheckpointError, "a training checkpoint")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a face_perception training checkpoint (it holds "
                              f"a {type(state).__name__})")
    if state.get("format") == FORMAT:
        if state.get("version") != VERSION:
            raise CheckpointError(f"{path} is a checkpoint of format version "
                                  f"{state.get('version')!r}; this package reads {VERSION}")
        if state.get("kind") != kind:
            raise CheckpointError(f"{path} is a {state.get('kind')} checkpoint, not a {kind} "
                                  "one")
        try:
            checkpoint = Checkpoint(
                kind=kind, epoch=int(state["epoch"]), step=int(state["step"]),
                models=dict(state["models"]), optimizer=state["optimizer"],
                identity=dict(state["identity"]), rng=dict(state.get("rng") or {}),
                scheduler=dict(state.get("scheduler") or {}),
                extra=dict(state.get("extra") or {}))
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{path} is an incomplete training checkpoint ({exc!r} "
                                  "missing or malformed)") from None
    else:
        try:
            checkpoint = legacy(state) if legacy is not None else None
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        if checkpoint is None:
            raise CheckpointError(f"{path} is not a face_perception {kind} training checkpoint")
    checkpoint.path = path
    return checkpoint


def check_identity(checkpoint: Checkpoint, expect: dict, defaults: Optional[dict] = None,
                   ) -> None:
    """Every key of ``expect`` (backbone, classes, ...) must match the checkpoint's identity;
    ``defaults`` stand in for keys that checkpoints of earlier versions lack."""
    path = checkpoint.path
    for key, want in expect.items():
        got = checkpoint.identity.get(key, (defaults or {}).get(key))
        if got != want:
            if key == "classes" and isinstance(got, list) and len(got) == len(want):
                diff = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
                raise CheckpointError(
                    f"{path} was trained on other classes: class {diff} is {got[diff]!r} there "
                    f"but {want[diff]!r} in this dataset (a renamed or replaced identity "
                    "folder shifts every class index)")
            raise CheckpointError(f"{path} holds {key}={_short(got)} but this run has "
                                  f"{key}={_short(want)}: it is a checkpoint of another model")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:200] + "...]"


def remove_checkpoint(path: PathLike) -> None:
    Path(path).unlink(missing_ok=True)
    sidecar_path(path).unlink(missing_ok=True)


# ------------------------------------------------------------------------------ RNG state
def rng_state() -> dict:
    """The state of every random generator a run draws from: python's, numpy's legacy global
    one, torch's (and CUDA's), as tensors and plain numbers (``weights_only`` loads them)."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, torch.tensor(internal, dtype=torch.int64),
                        gauss],
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                       int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what ``rng_state`` saved (checkpoints of earlier formats hold torch's only)."""
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal.tolist()), gauss))
    if "numpy" in state:
        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss),
                             float(cached)))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
