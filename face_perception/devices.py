"""Which torch device a model runs on: the one CUDA -> CPU fallback rule of the library (detector,
embedder, training, learners), below every layer that loads a torch model."""
from __future__ import annotations

import warnings


def torch_device(device, stacklevel: int = 3) -> str:
    """'cpu', 'cuda' or 'cuda:N'; CUDA without a GPU falls back to 'cpu' with a warning."""
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu' or 'cuda' (or 'cuda:N'), got {device!r}")
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            warnings.warn(f"CUDA requested (device {device!r}) but CUDA is not available to "
                          "torch; using the CPU", RuntimeWarning, stacklevel=stacklevel)
            return "cpu"
    return device
