"""Where a model runs: the inference backends every model runner accepts (detector, embedder,
CLI options, node parameters) and the one CUDA -> CPU fallback rule of the library (detector,
embedder, training, learners), below every layer that loads a model."""
from __future__ import annotations

import warnings

# onnxruntime fp32, the guarded int8 graph (onnxruntime), PyTorch.
BACKENDS = ("onnx", "onnx-int8", "torch")


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
