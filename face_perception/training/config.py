"""The settings every training run shares, defined once: the names of the optimizers, the
learning-rate schedules and the training modes, the device rule ('auto' included) and the
thread count of a training process. Detection's ``TrainSettings`` and recognition's
``TrainConfig`` check their values here."""
from __future__ import annotations

import os
from typing import Optional

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "poly")
# What a run trains: everything (new network), a new head on a frozen trained backbone, or a
# trained backbone and a new head together.
MODES = ("full", "head_only", "finetune")


def check_choice(name: str, value, valid) -> None:
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")


def check_device(device) -> None:
    """'auto', 'cpu', 'cuda' or 'cuda:N'."""
    if not isinstance(device, str) or not (device in ("cpu", "auto")
                                           or device.startswith("cuda")):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda' (or 'cuda:N'), got "
                         f"{device!r}")


def resolve_device(device: str, stacklevel: int = 4) -> str:
    """The device a run trains on: 'auto' is CUDA when torch sees a GPU, else the CPU; CUDA
    without a GPU falls back to the CPU with a warning (``devices.torch_device``)."""
    import torch

    from face_perception.devices import torch_device

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch_device(device, stacklevel=stacklevel)


def process_threads(threads: Optional[int]) -> int:
    """Torch threads of one training process: ``threads``, or with 0 / None the usable cores
    shared out among the processes torchrun started on this machine (spinning OpenMP threads
    that outnumber the cores cost 3-7x on a shared machine, docs/training.md)."""
    from face_perception.threads import usable_cores

    if threads:
        return int(threads)
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, usable_cores() // local)


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9,
                   weight_decay: float = 0.0):
    """SGD (with momentum) or AdamW over ``params`` (tensors or parameter groups; a group's own
    ``weight_decay`` wins over ``weight_decay``)."""
    import torch

    check_choice("optimizer", name, OPTIMIZERS)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)


def set_lr(optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
