"""Partial FC (as arcface_torch's PartialFC_V2): the margin head of a run whose classes are
sharded across processes is one module that owns its shard. It holds classes [start, stop) of
the head's class tensors (and of their optimizer state: SGD momentum, AdamW moments), samples
the class centres of a step (``sample_rate``, ``class_sampling``), and returns the per-sample
cross-entropy over every process's classes; the loop only calls it. Checkpoints hold the
whole head: ``whole`` and ``shard`` convert, so that a run resumes on any number of
processes."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from face_perception.recognition.training import distributed
from face_perception.recognition.training.class_sampling import ClassSampler, sampled_head


class PartialFC(nn.Module):
    """This process's shard of ``full_head`` (a head over all ``num_classes``, so that the
    shards together start from exactly the single-process weights). ``new_head(n)`` builds the
    same head for ``n`` classes."""

    def __init__(self, new_head: Callable[[int], nn.Module], full_head: nn.Module,
                 num_classes: int, ctx: distributed.Context, sample_rate: float = 1.0,
                 seed: int = 0):
        super().__init__()
        self.ctx, self.num_classes, self.new_head = ctx, num_classes, new_head
        self.keys = frozenset(distributed.class_keys(full_head.state_dict(), num_classes))
        self.start, self.stop = distributed.shard_range(num_classes, ctx.world, ctx.rank)
        self.head = new_head(self.stop - self.start)
        self.head.load_state_dict(distributed.shard_state(full_head.state_dict(), self.keys,
                                                          self.start, self.stop))
        self.sampler = ClassSampler(sample_rate, self.stop - self.start, seed, ctx.rank)
        self.optimizer_names: list = []  # the optimizer's parameter names, in its order

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor):
        """(per-sample cross-entropy over all classes, whether each sample's target logit is
        the top one) for the embeddings and labels of the whole global batch."""
        # DDP averages the backbone's gradients over processes; the gathered loss already
        # covers every process's samples, so their gradients must be summed instead.
        scaled = distributed.scale_grad(embeddings, float(self.ctx.world))
        sizes = distributed.row_counts(len(labels), self.ctx)
        emb = distributed.gather_rows(scaled, sizes)
        with torch.no_grad():
            labels = distributed.gather_rows(labels, sizes)
        local = torch.where((labels >= self.start) & (labels < self.stop), labels - self.start,
                            torch.full_like(labels, -1))
        head = self.head
        if self.sampler.enabled:
            # logits over the positives of the global batch and a random share of the other
            # centres of this shard
            index, local = self.sampler.choose(local)

            def head(e, y):
                return sampled_head(self.head, self.keys, index, e, y)
        logits = head(emb, None)
        hit = local >= 0
        if bool(hit.any()) or hasattr(self.head, "iteration"):
            margined = head(emb[hit], local[hit])
            logits = logits.index_put((torch.nonzero(hit).flatten(),), margined)
        ce = distributed.sharded_cross_entropy(logits, local)
        with torch.no_grad():
            top = logits.max(dim=1).values
            torch.distributed.all_reduce(top, op=torch.distributed.ReduceOp.MAX)
            rows = torch.nonzero(hit).flatten()
            correct = torch.zeros_like(top)
            correct[rows] = (logits[rows, local[rows]] >= top[rows]).to(top.dtype)
            torch.distributed.all_reduce(correct)
        return ce, correct

    # ---------------------------------------------------------------- whole <-> shard
    def _by_class(self, index: int) -> bool:
        names = self.optimizer_names
        name = names[index] if index < len(names) else ""
        return name.startswith("head.") and name[len("head."):] in self.keys

    def _per_class(self, opt_state: dict) -> dict:
        """{"<param index>/<state name>": tensor} of the class-sharded optimizer state."""
        return {f"{i}/{name}": v for i, s in opt_state["state"].items() if self._by_class(i)
                for name, v in s.items() if torch.is_tensor(v) and v.ndim > 0}

    def whole(self, optimizer) -> tuple:
        """(head state, optimizer state) as one process holding every class would have them
        (a collective: every process must call it)."""
        head_state = distributed.gather_state(self.head.state_dict(), self.keys, self.ctx)
        opt_state = optimizer.state_dict()
        part = self._per_class(opt_state)
        gathered = distributed.gather_state(part, set(part), self.ctx)
        # new dicts: the ones state_dict() returns are the optimizer's own
        opt_state = {**opt_state, "state": {
            i: {name: gathered.get(f"{i}/{name}", v) for name, v in s.items()}
            for i, s in opt_state["state"].items()}}
        return head_state, opt_state

    def shard(self, head_state: dict, opt_state: dict) -> tuple:
        """This process's part of a whole (head state, optimizer state)."""
        head_state = distributed.shard_state(head_state, self.keys, self.start, self.stop)
        part = self._per_class(opt_state)
        opt_state = {**opt_state, "state": {
            i: {name: v[self.start:self.stop] if f"{i}/{name}" in part else v
                for name, v in s.items()}
            for i, s in opt_state["state"].items()}}
        return head_state, opt_state

    def full_head(self, optimizer) -> nn.Module:
        """The head over every class (a collective)."""
        head = self.new_head(self.num_classes)
        head.load_state_dict(self.whole(optimizer)[0])
        return head
