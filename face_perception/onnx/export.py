"""Export a torch module to ONNX atomically, keeping the file only if onnxruntime agrees with torch.

The one export path of the package: detection (``detection/export.py``) and recognition
(``recognition/pretrained.py``, the learner's ``optimize``) describe their graphs and call
:func:`export_checked`.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.files import atomic_path

DEFAULT_OPSET = 17


class ExportError(RuntimeError):
    """An export that failed or whose outputs do not match the torch model."""


def export_onnx(module, path: os.PathLike, sample_input, input_names: Sequence[str],
                output_names: Sequence[str], dynamic_axes: dict, opset: int = DEFAULT_OPSET,
                do_constant_folding: bool = True) -> Path:
    """Trace ``module`` on ``sample_input`` (a tensor) and write the ONNX graph to ``path``.

    Written atomically; no parity check (see :func:`export_checked`).
    """
    with atomic_path(path) as tmp:
        _export(module, tmp, sample_input, input_names, output_names, dynamic_axes, opset,
                do_constant_folding)
    return Path(path)


def _export(module, path: Path, sample_input, input_names, output_names, dynamic_axes, opset,
            do_constant_folding) -> None:
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation, traced shape arithmetic and
        # constant folding; torch >= 2.9's default (dynamo) exporter needs onnxscript, which is
        # not a dependency, and gains nothing for these plain CNNs.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (sample_input,), str(path), input_names=list(input_names),
                          output_names=list(output_names), dynamic_axes=dynamic_axes,
                          opset_version=opset, do_constant_folding=bool(do_constant_folding),
                          dynamo=False)


def onnx_difference(module, onnx_path: os.PathLike, inputs: Sequence[np.ndarray],
                    relative: bool = False) -> float:
    """Largest absolute difference between ``module`` (run in eval mode) and onnxruntime on
    ``onnx_path`` over every output of every input array.

    With ``relative`` each output's difference is divided by its largest magnitude (at least 1):
    untrained networks produce outputs in the thousands, where float32 rounding alone exceeds
    1e-4. Outputs of different shapes raise ExportError.
    """
    import onnxruntime as ort
    import torch

    module.eval()
    from face_perception.onnx.session import session_options

    session = ort.InferenceSession(str(onnx_path), sess_options=session_options(),
                                   providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    worst = 0.0
    for blob in inputs:
        got = session.run(None, {input_name: blob})
        with torch.inference_mode():
            want = module(torch.from_numpy(blob).to(device))
        want = [want] if isinstance(want, torch.Tensor) else list(want)
        if len(got) != len(want):
            raise ExportError(f"{onnx_path} has {len(got)} outputs, torch gives {len(want)}")
        for a, b in zip(got, want):
            b = b.float().cpu().numpy()
            if a.shape != b.shape:
                raise ExportError(f"{onnx_path}: output shape {a.shape} != torch {b.shape}")
            diff = float(np.abs(a - b).max()) if a.size else 0.0
            if relative:
                diff /= max(1.0, float(np.abs(b).max()) if b.size else 1.0)
            worst = max(worst, diff)
    return worst


def export_checked(module, path: os.PathLike, sample_input, check_inputs: Sequence[np.ndarray],
                   tolerance: float, input_names: Sequence[str], output_names: Sequence[str],
                   dynamic_axes: dict, opset: int = DEFAULT_OPSET,
                   do_constant_folding: bool = True, relative: bool = False,
                   reference: Optional[object] = None) -> float:
    """Export ``module`` to ``path`` and return the largest difference from torch.

    The graph is written to a temporary file, run with onnxruntime on ``check_inputs``
    (N x C x H x W float32 arrays; vary the dynamic axes) and compared with ``reference`` (default
    ``module``: pass the unfused model when ``module`` is a fused copy) using
    :func:`onnx_difference`. Only a graph within ``tolerance`` is renamed onto ``path``; otherwise
    ExportError gives the figures and ``path`` is left as it was.
    """
    reference = module if reference is None else reference
    with atomic_path(path) as tmp:
        _export(module, tmp, sample_input, input_names, output_names, dynamic_axes, opset,
                do_constant_folding)
        diff = onnx_difference(reference, tmp, check_inputs, relative=relative)
        if not diff <= tolerance:  # NaN fails too
            shapes = ", ".join(str(tuple(x.shape)) for x in check_inputs)
            kind = "relative" if relative else "absolute"
            raise ExportError(f"ONNX export to {path} differs from torch by {diff:.3g} "
                              f"(max {kind} difference on inputs {shapes}; tolerance "
                              f"{tolerance:g}); not written")
    return diff
