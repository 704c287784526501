"""Training losses over head logits: focal loss (the seed's default) and plain cross-entropy.
The training loop and ``FocalLoss`` share ``per_sample_loss``: the loop has the per-sample
cross-entropy already (partial FC computes it over every process's classes)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LOSS_NAMES = ("focal", "softmax")
FOCAL_GAMMA = 2.0  # as in the paper and face.evoLVe


def focal(ce: torch.Tensor, gamma: float = FOCAL_GAMMA) -> torch.Tensor:
    """Focal loss of each sample from its cross-entropy: ``(1 - p_t)^gamma * ce``, with
    ``p_t = e^-ce`` the probability of the target class."""
    return (1.0 - torch.exp(-ce)) ** gamma * ce


def per_sample_loss(ce: torch.Tensor, name: str) -> torch.Tensor:
    """The loss ``name`` of each sample from its cross-entropy."""
    if name == "focal":
        return focal(ce)
    if name == "softmax":
        return ce
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSS_NAMES)}")


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) for multi-class softmax: ``mean((1 - p_t)^gamma * -log p_t)``.

    gamma=2 as in the paper and face.evoLVe; gamma=0 is plain cross-entropy. Down-weights
    samples the model already gets right, so hard identities dominate the gradient.
    """

    def __init__(self, gamma: float = FOCAL_GAMMA, reduction: str = "mean") -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")
        self.gamma, self.reduction = float(gamma), reduction

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = focal(F.cross_entropy(logits, labels.long(), reduction="none"), self.gamma)
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


def get_loss(name: str, **kw) -> nn.Module:
    if name == "focal":
        return FocalLoss(**kw)
    if name == "softmax":
        return nn.CrossEntropyLoss(**kw)
    raise ValueError(f"unknown loss {name!r}; valid: {', '.join(LOSS_NAMES)}")
