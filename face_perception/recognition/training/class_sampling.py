"""Partial FC's class sampling (``sample_rate``, arcface_torch's PartialFC v2): per step a
process keeps the class centres of its shard that the global batch's labels hit (the
positives) plus random others, ``int(sample_rate x shard size)`` in all, and the margin head
computes logits over those centres only, so only their rows get gradients.

The random draw comes from a generator seeded by (seed, iteration, micro-batch, rank), not from
the global RNG: a resumed run draws what the uninterrupted run drew, with nothing to store."""
from __future__ import annotations

import torch
from torch import nn


class ClassSampler:
    """Chooses the class centres of one step among ``num_local`` (this process's shard).

    ``rate`` 1.0 disables sampling (``enabled`` false): every centre is used, as without it."""

    def __init__(self, rate: float, num_local: int, seed: int, rank: int = 0):
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {rate!r}")
        self.rate, self.num_local, self.seed, self.rank = float(rate), int(num_local), seed, rank
        # arcface_torch's count: int(sample_rate * num_local), at least one centre
        self.num_sample = max(1, int(self.rate * self.num_local))
        self.enabled = self.rate < 1.0
        self._generator = torch.Generator()
        self.at(0)

    def at(self, iteration: int, micro_batch: int = 0) -> None:
        """Seed the draws of ``iteration``'s ``micro_batch`` (a pure function of the run's seed,
        so resume needs no sampler state)."""
        self._generator.manual_seed(
            ((self.seed * 1_000_003 + int(iteration)) * 1_009 + int(micro_batch)) * 101
            + self.rank)

    def choose(self, local_labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(sorted indices of the chosen centres, labels as positions among them).

        ``local_labels``: class index within this shard, -1 for samples of other shards (kept
        -1). The positives are always chosen; when they alone exceed the count, only they are
        (arcface_torch does the same)."""
        hit = local_labels >= 0
        positive = torch.unique(local_labels[hit].cpu(), sorted=True)
        if len(positive) >= self.num_sample:
            index = positive
        else:
            score = torch.rand(self.num_local, generator=self._generator)
            score[positive] = 2.0  # above every random score: kept by the top-k
            index = torch.topk(score, self.num_sample).indices.sort().values
        index = index.to(local_labels.device)
        remapped = torch.where(hit, torch.searchsorted(index, local_labels.clamp_min(0)),
                               local_labels)
        return index, remapped


def sampled_head(head: nn.Module, keys: set, index: torch.Tensor, embeddings: torch.Tensor,
                 labels=None) -> torch.Tensor:
    """``head(embeddings, labels)`` with the class-dimension tensors ``keys`` (class centres,
    a classifier's bias) cut to the rows ``index``: logits over the chosen classes only. The
    head's other state (AdaFace's norm statistics, SphereFace's step counter) is its own and
    updated as in a plain call."""
    params = dict(head.named_parameters())
    cut = {k: params[k][index] for k in keys if k in params}
    return torch.func.functional_call(head, cut, (embeddings, labels), strict=False)
