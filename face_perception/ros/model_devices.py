"""Where a loaded model runs, after any CUDA fallback (for the nodes' diagnostics)."""
from __future__ import annotations

from typing import Any


def devices_of(model: Any) -> str:
    """Where ``model`` runs, after any CUDA fallback: 'cpu', 'cuda' or 'cpu,cuda'.

    A Detector tells by its session's providers (its ``device`` is the one requested); an
    Embedder's ``device`` is the one in use; a setup with both (the recognizer's) lists both.
    """
    parts = [getattr(model, n) for n in ("embedder", "detector")
             if getattr(model, n, None) is not None] or [model]
    found = set()
    for part in parts:
        providers = getattr(part, "providers", None)
        if providers:
            gpu = any(str(p).startswith("cuda") or p in ("CUDAExecutionProvider",
                                                         "TensorrtExecutionProvider")
                      for p in providers)
        elif getattr(part, "device", None) is not None:
            gpu = str(part.device).startswith("cuda")
        else:
            continue
        found.add("cuda" if gpu else "cpu")
    return ",".join(sorted(found))
