"""Data-parallel training under ``torchrun``: process group set-up (gloo on CPU, nccl on CUDA)
and the collectives partial FC (``partial_fc.PartialFC``) is built from: class shards, their
gathering, and a softmax cross-entropy over every process's shard."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Context:
    """This process's place in the run: ``world`` processes, this one is ``rank``."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    started_here: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        if self.started_here and dist.is_initialized():
            dist.destroy_process_group()


def setup(device: str) -> Context:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_*);
    a single process when WORLD_SIZE is unset or 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    started = False
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
        started = True
    return Context(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=local,
                   started_here=started)


def shard_range(num_classes: int, world: int, rank: int) -> tuple[int, int]:
    """Classes [start, stop) held by ``rank`` (contiguous, sizes differ by at most one)."""
    base, extra = divmod(num_classes, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


def class_keys(full_state: dict, num_classes: int) -> set:
    """Keys of a whole head's state whose first dimension is the class (what partial FC
    shards); the other tensors (AdaFace's norm statistics, ...) are kept whole per process."""
    return {k for k, v in full_state.items()
            if getattr(v, "ndim", 0) and v.shape[0] == num_classes}


def shard_state(full: dict, keys: set, start: int, stop: int) -> dict:
    """Rows [start, stop) of the ``keys`` tensors of a whole state; the rest as they are."""
    return {k: v[start:stop].clone() if k in keys else v for k, v in full.items()}


def gather_state(part: dict, keys: set, ctx: Context) -> dict:
    """The whole state from every process's shard (a collective: every process calls it and
    gets the same result): the ``keys`` tensors concatenated in rank order, the rest taken from
    rank 0."""
    parts = [None] * ctx.world
    dist.all_gather_object(parts, {k: v.detach().cpu() if torch.is_tensor(v) else v
                                   for k, v in part.items()})
    return {k: torch.cat([p[k] for p in parts]) if k in keys else parts[0][k] for k in part}


def mean_over_processes(value: float, ctx: Context) -> float:
    if not ctx.enabled:
        return value
    t = torch.tensor([float(value)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / ctx.world


class _AllReduceSum(torch.autograd.Function):
    """The sum over processes, differentiable: every process's input reaches every output, so
    the gradient is the sum of all processes' gradients (torch's own differentiable
    collectives in ``torch.distributed.nn`` are deprecated and warn on every call)."""

    @staticmethod
    def forward(ctx, x):
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(x)


class _GatherRows(torch.autograd.Function):
    """Every process's rows concatenated in rank order; the processes may hold different
    numbers of rows (``sizes``; batches of ``drop_last: false`` split unevenly), padded for the
    collective and cut back. The gradient of a process's rows is the sum of every process's
    gradient for them."""

    @staticmethod
    def forward(ctx, x, sizes):
        padded = x.new_zeros((max(sizes),) + tuple(x.shape[1:]))
        padded[:len(x)] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[:ctx.rank])
        return grad[start:start + ctx.sizes[ctx.rank]], None


def row_counts(n: int, ctx: Context) -> list:
    """How many rows (samples) each process holds this step."""
    counts = [torch.zeros(1, dtype=torch.long) for _ in range(ctx.world)]
    dist.all_gather(counts, torch.tensor([n], dtype=torch.long))
    return [int(c) for c in counts]


def gather_rows(x: torch.Tensor, sizes: list) -> torch.Tensor:
    return _GatherRows.apply(x, sizes)


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; gradient times ``factor`` (DDP averages what partial FC must sum)."""

    @staticmethod
    def forward(ctx, x, factor):
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.factor, None


class _ShardedCrossEntropy(torch.autograd.Function):
    """Per-sample cross-entropy of logits split by class across processes: forward reduces the
    max, the sum of exponentials and the target logit over all shards; backward gives this
    shard's part, softmax - one_hot."""

    @staticmethod
    def forward(ctx, logits, local_labels):
        hit = local_labels >= 0
        with torch.no_grad():
            top = logits.max(dim=1).values
            dist.all_reduce(top, op=dist.ReduceOp.MAX)
            exp = torch.exp(logits - top[:, None])
            total = exp.sum(dim=1)
            dist.all_reduce(total)
            target = torch.zeros_like(top)
            rows = torch.nonzero(hit).flatten()
            target[rows] = logits[rows, local_labels[rows]] - top[rows]
            dist.all_reduce(target)
        ctx.save_for_backward(exp / total[:, None], local_labels)
        return torch.log(total) - target

    @staticmethod
    def backward(ctx, grad):
        prob, local_labels = ctx.saved_tensors
        g = prob.clone()
        rows = torch.nonzero(local_labels >= 0).flatten()
        g[rows, local_labels[rows]] -= 1.0
        return g * grad[:, None], None


def scale_grad(x: torch.Tensor, factor: float) -> torch.Tensor:
    return _ScaleGrad.apply(x, factor)


def sharded_cross_entropy(logits: torch.Tensor, local_labels: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy over the classes of every process (``local_labels``: the
    class within this process's shard, -1 for samples whose class another process holds)."""
    return _ShardedCrossEntropy.apply(logits, local_labels)
