"""The learning rate as a pure function of the iteration (so the iteration is the whole
scheduler state a checkpoint needs): the seed's step schedule, cosine and polynomial decay,
each after an optional linear warm-up."""
from __future__ import annotations

import math

from face_perception.recognition.training.config import TrainConfig


def lr_at(base: float, stages, iteration: int) -> float:
    """The seed's schedule: ``base`` divided by 10 at each stage iteration passed."""
    return base * 0.1 ** sum(1 for s in stages if iteration >= s)


def learning_rate(cfg: TrainConfig, iteration: int, total: int) -> float:
    """The learning rate of ``iteration`` (0-based) of ``total``: linear warm-up over
    ``warmup_iters`` (from lr / warmup_iters up to lr), then the step schedule of the seed,
    a cosine to 0 or a polynomial (power 2, as arcface_torch) to 0 over the rest."""
    if iteration < cfg.warmup_iters:
        return cfg.lr * (iteration + 1) / cfg.warmup_iters
    if cfg.lr_schedule == "step":
        return lr_at(cfg.lr, cfg.stages, iteration)
    span = max(1, total - cfg.warmup_iters)
    done = min(1.0, (iteration - cfg.warmup_iters) / span)
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * done))
    return cfg.lr * (1.0 - done) ** 2
