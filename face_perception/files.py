"""Files on disk, one rule each: sha256 of a file, atomic writes, the user cache folder.

Every model, gallery, checkpoint and cache file of the package is written through
``atomic_write_bytes``/``atomic_write_text``/``atomic_path`` (a temporary file in the same folder,
fsynced, then renamed), so a crash never leaves a half-written file under the final name.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Optional

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def atomic_path(path: os.PathLike, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that want a file name (``torch.save``, ``torch.onnx.export``; give ``np.savez``
    an open file, it appends ``.npz`` to names). On an exception the temporary file is removed
    and ``path`` is left as it was. ``mode`` sets the permission bits of the new file (for
    example 0o600 for personal data); without it they are what ``open()`` would give (0o666
    minus the umask), not the owner-only bits of the temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, _default_mode() if mode is None else mode)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _default_mode() -> int:
    """0o666 minus the process umask (read from /proc: setting it to read it races threads)."""
    try:
        with open("/proc/self/status") as fh:
            umask = next(int(line.split()[1], 8) for line in fh if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)
        os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: os.PathLike, data: bytes, mode: Optional[int] = None) -> Path:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: os.PathLike, text: str, mode: Optional[int] = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode)


def load_torch_file(path: os.PathLike, error: type = ValueError, what: str = "a torch file"):
    """``torch.load`` of a file the package wrote or downloaded: always ``weights_only=True``
    (tensors and plain containers, never arbitrary pickled objects) onto the CPU.

    A missing file raises FileNotFoundError; an unreadable or non-tensor file raises ``error``
    naming the path."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad archive
        raise error(f"{path} is not {what} loadable with weights_only=True: {exc}") from None


def cache_dir(sub: str = "") -> Path:
    """The user cache folder for converted weights: $FACE_PERCEPTION_CACHE, else XDG cache."""
    root = os.environ.get("FACE_PERCEPTION_CACHE")
    if not root:
        root = os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")),
                            "face_perception")
    path = Path(root) / sub if sub else Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def file_lock(lock_path: os.PathLike) -> Iterator[None]:
    """An exclusive advisory lock (flock) held while a cache entry is built by one process."""
    import fcntl

    lock_path = Path(lock_path)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
