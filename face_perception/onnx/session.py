"""onnxruntime session set-up shared by the detector and the embedder: threads and providers.

Threads follow the one policy of face_perception/threads.py: ``session_options`` resolves the
count (None or 0: every usable core, ``usable_cores``: the CPU affinity a container or taskset
sets) and keeps idle pool threads from spinning (measured in docs/ros.md#threads). The nodes
take every usable core, measured best for a camera pipeline, where detector and recognizer work
on a frame one after the other;
``threads_for_share`` gives each session its share for sessions that really run at the same
time (docs/ros.md#threads). GPU: CUDA and TensorRT execution providers
with their options (TensorRT engine cache, fp16); untested on this CPU-only machine.
"""
from __future__ import annotations

import warnings
from typing import Optional

from face_perception.files import cache_dir
from face_perception.threads import onnxruntime_spin, resolve_threads, usable_cores

# Provider option keys we understand (onnxruntime's names), with where they go.
TENSORRT_KEYS = ("trt_fp16_enable", "trt_int8_enable", "trt_engine_cache_enable",
                 "trt_engine_cache_path", "trt_max_workspace_size", "trt_timing_cache_enable")
CUDA_KEYS = ("device_id", "gpu_mem_limit", "cudnn_conv_algo_search", "arena_extend_strategy")




def threads_for_share(sessions_running_together: int = 2) -> int:
    """Intra-op threads for one of ``sessions_running_together`` sessions on this machine."""
    return max(1, usable_cores() // max(1, int(sessions_running_together)))


def session_options(num_threads: Optional[int] = None, spin: Optional[bool] = None):
    """SessionOptions with full graph optimisation, ``resolve_threads(num_threads)`` intra-op
    threads (None or 0: every usable core, the CPU affinity a container or taskset narrows)
    and one inter-op thread (the graphs run
    sequentially, so more inter-op threads only wait). ``spin`` (None: the package policy,
    ``threads.onnxruntime_spin()``, off) lets idle pool threads busy-wait for the next operator
    instead of sleeping: that takes a core from whatever runs beside (docs/ros.md#threads)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.inter_op_num_threads = 1
    opts.intra_op_num_threads = resolve_threads(num_threads)
    spin = onnxruntime_spin() if spin is None else bool(spin)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return opts


def onnx_providers(device: str, options: Optional[dict] = None) -> list:
    """Execution providers for ``device`` ('cpu' or 'cuda[:N]'), best first, CPU last.

    For 'cuda': TensorRT (when onnxruntime has it) with its engine cache on by default in the
    face_perception cache (building an engine takes minutes on a Jetson; the cache makes it
    once per model and GPU), then CUDA. ``options``: onnxruntime provider options, e.g.
    ``{"trt_fp16_enable": True}``; keys are routed to the provider they belong to. Falls back
    to the CPU with a warning when no GPU provider is installed.
    """
    import onnxruntime as ort

    options = dict(options or {})
    unknown = sorted(set(options) - set(TENSORRT_KEYS) - set(CUDA_KEYS))
    if unknown:
        raise ValueError(f"unknown execution provider options {unknown}; known: "
                         f"{list(TENSORRT_KEYS + CUDA_KEYS)}")
    if not str(device).startswith("cuda"):
        return ["CPUExecutionProvider"]
    device_id = int(str(device).split(":")[1]) if ":" in str(device) else 0
    cuda = {"device_id": device_id}
    cuda.update({k: v for k, v in options.items() if k in CUDA_KEYS})
    trt = {"device_id": cuda["device_id"], "trt_engine_cache_enable": True,
           "trt_engine_cache_path": str(cache_dir("tensorrt"))}
    trt.update({k: v for k, v in options.items() if k in TENSORRT_KEYS})
    available = ort.get_available_providers()
    providers = []
    if "TensorrtExecutionProvider" in available:
        providers.append(("TensorrtExecutionProvider", trt))
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", cuda))
    if not providers:
        warnings.warn(f"CUDA requested (device={device!r}) but onnxruntime has no CUDA/TensorRT "
                      f"execution provider (available: {available}); using the CPU",
                      RuntimeWarning, stacklevel=3)
    return providers + ["CPUExecutionProvider"]
