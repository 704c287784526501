"""Batch norm over the global batch of all processes on the CPU (gloo), where torch's
SyncBatchNorm does not run; ``synchronise_batchnorm`` converts a model's batch-norm layers."""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class GlobalBatchNorm(_BatchNorm):
    """Batch norm whose training-mode statistics are those of the global batch: each process
    sums per channel x, x^2 and the count, one differentiable all-reduce adds them up
    (``distributed.all_reduce_sum``), and
    forward and backward equal one process running the whole batch. In eval mode, or outside
    a process group, it is plain batch norm (same parameters and buffers, same state dict)."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        synced = self.training and dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1
        if not synced:
            return super().forward(x)
        from face_perception.recognition.training.distributed import all_reduce_sum

        dims = [0] + list(range(2, x.dim()))
        # float64 sums: var = E[x^2] - E[x]^2 would lose float32 digits to cancellation
        xd = x.double()
        count = torch.full((1,), float(x.numel() // x.shape[1]), dtype=torch.float64,
                           device=x.device)
        packed = all_reduce_sum(torch.cat([xd.sum(dims), (xd * xd).sum(dims), count]))
        c = x.shape[1]
        n = packed[2 * c]
        mean = packed[:c] / n
        var = (packed[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(n.detach()))
        shape = [1, c] + [1] * (x.dim() - 2)
        # normalised in float64 too: its gradient sums terms that cancel when |mean| >> std
        y = ((xd - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)).to(x.dtype)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        """As torch's batch norm: an exponential average with ``momentum`` (a cumulative one
        when momentum is None) of the mean and the unbiased variance."""
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            unbiased = var * (n / max(n - 1.0, 1.0))
            self.running_mean.mul_(1 - factor).add_(factor * mean.to(self.running_mean.dtype))
            self.running_var.mul_(1 - factor).add_(factor * unbiased.to(self.running_var.dtype))


def synchronise_batchnorm(module: nn.Module, device: str) -> nn.Module:
    """``module`` with every batch-norm layer computing global-batch statistics: torch's
    SyncBatchNorm on CUDA, ``GlobalBatchNorm`` on the CPU. Weights and buffers are kept."""
    if device.startswith("cuda"):
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, _BatchNorm) and not isinstance(module, (GlobalBatchNorm,
                                                                  nn.SyncBatchNorm)):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        for p_new, p_old in zip(new.parameters(), module.parameters()):
            p_new.requires_grad_(p_old.requires_grad)
        return new
    for name, child in module.named_children():
        converted = _convert(child)
        if converted is not child:
            setattr(module, name, converted)
    return module
