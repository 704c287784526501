"""The learning rate as a pure function of the position in the run (iteration or epoch), so
that the position is the whole scheduler state a checkpoint needs: the seed's step schedule
(divide by 10 at each stage), cosine and polynomial decay, each after an optional linear
warm-up. Recognition counts positions in iterations, detection in epochs."""
from __future__ import annotations

import math
from collections.abc import Sequence


def step_lr(lr: float, stages: Sequence[int], position: int) -> float:
    """``lr`` divided by 10 at each stage already reached."""
    return lr * 0.1 ** sum(1 for s in stages if position >= s)


def learning_rate(lr: float, position: int, total: int, schedule: str = "step",
                  stages: Sequence[int] = (), warmup: int = 0) -> float:
    """The learning rate of ``position`` (0-based) of ``total``: linear warm-up over
    ``warmup`` positions (from lr / warmup up to lr), then the step schedule, a cosine to 0 or
    a polynomial (power 2, as arcface_torch) to 0 over the rest."""
    if position < warmup:
        return lr * (position + 1) / warmup
    if schedule == "step":
        return step_lr(lr, stages, position)
    span = max(1, total - warmup)
    done = min(1.0, (position - warmup) / span)
    if schedule == "cosine":
        return lr * 0.5 * (1.0 + math.cos(math.pi * done))
    if schedule == "poly":
        return lr * (1.0 - done) ** 2
    raise ValueError(f"unknown learning-rate schedule {schedule!r}")
