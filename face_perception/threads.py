"""One thread policy for every torch and onnxruntime entry point (library, CLI, nodes, training).

A robot's CPU is shared: a pool thread that busy-waits for the next operator takes a core from
the process running beside it. So (1) every entry point takes a thread count (``None`` or 0:
every usable core), resolved here once; (2) OpenMP pool threads sleep when idle
(``OMP_WAIT_POLICY=PASSIVE``, set at package import unless the user chose otherwise, because
OpenMP reads it once, when torch's runtime starts); (3) onnxruntime's intra-op pool does not spin
(``onnx.session.session_options``).
"""
from __future__ import annotations

import os
from typing import Optional

# OpenMP reads these when its runtime starts (at torch's first parallel region): set them before.
OPENMP_PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}
# onnxruntime's intra-op pool busy-waits between operators unless told not to. "1" here turns
# spinning back on (for a machine with cores to spare; docs/ros.md#threads has the measurements).
ORT_SPIN_ENV = "FACE_PERCEPTION_ORT_SPIN"


def onnxruntime_spin() -> bool:
    """Whether onnxruntime pool threads spin when idle: no, unless FACE_PERCEPTION_ORT_SPIN=1."""
    value = os.environ.get(ORT_SPIN_ENV, "0").strip().lower()
    if value not in ("0", "1", "false", "true", ""):
        raise ValueError(f"{ORT_SPIN_ENV} must be 0 or 1, got {value!r}")
    return value in ("1", "true")


def apply_openmp_wait_policy() -> None:
    """Idle OpenMP threads sleep instead of spinning (the user's own setting wins)."""
    for key, value in OPENMP_PASSIVE_ENV.items():
        os.environ.setdefault(key, value)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_threads(num_threads: Optional[int]) -> int:
    """The thread count an entry point uses: ``None`` or 0 -> every usable core, else the
    positive integer given. Refuses negatives and non-integers with the value in the message."""
    if num_threads is None or (not isinstance(num_threads, bool) and num_threads == 0):
        return usable_cores()
    if isinstance(num_threads, bool) or int(num_threads) != num_threads or num_threads < 0:
        raise ValueError(f"threads must be a non-negative integer (0 = every core), "
                         f"got {num_threads!r}")
    return int(num_threads)


_interop_set = False


def set_torch_threads(num_threads: Optional[int]) -> int:
    """Set torch's intra-op threads to ``resolve_threads(num_threads)`` and its inter-op pool to
    one thread (once per process: torch refuses a second call after parallel work began).
    Returns the count set."""
    import torch

    global _interop_set
    n = resolve_threads(num_threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if not _interop_set:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # parallel work already ran in this process: keep torch's pool
            pass
        _interop_set = True
    return n
