"""``face-perception info``: versions and backends available on this machine."""
from __future__ import annotations

import importlib
import json
import platform


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except Exception:  # noqa: BLE001 - any import failure just means "not available"
        return "not installed"


def run(args) -> int:
    import face_perception
    info = {
        "face_perception": face_perception.__version__,
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "opencv": _version("cv2"),
        "torch": _version("torch"),
        "onnxruntime": _version("onnxruntime"),
        "faiss": _version("faiss"),
    }
    try:
        import onnxruntime
        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    print(json.dumps(info, indent=2))
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="show library versions and available inference backends")
    p.set_defaults(func=run)
