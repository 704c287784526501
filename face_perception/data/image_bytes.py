"""Fast checks that a file or a byte string is a complete image, from its signature, its last
bytes and its header (PIL parses only the header): every sample of a training set can be
checked before the first step without decoding it."""
from __future__ import annotations

import io
import os
from pathlib import Path

from face_perception.data.errors import DatasetError

# (leading bytes, suffix); PPM/PGM/PBM start with P1..P6
SIGNATURES = ((b"\xff\xd8", ".jpg"), (b"\x89PNG", ".png"), (b"BM", ".bmp"),
              (b"RIFF", ".webp"), (b"II*\0", ".tif"), (b"MM\0*", ".tif"))
_PNM = tuple(f"P{i}".encode() for i in range(1, 7))
_TAIL = 1024


def image_suffix(data: bytes) -> str:
    """File suffix for encoded image bytes, from their signature ('.jpg' when unknown)."""
    for sig, suffix in SIGNATURES:
        if data[:len(sig)] == sig:
            return suffix
    return ".jpg"


def check_image_bytes(data: bytes, where: str) -> None:
    """Refuse bytes that are not an image of a known format, a JPEG/PNG cut short (OpenCV
    would decode it into grey rows) or an image whose header does not parse."""
    if not data:
        raise DatasetError(f"{where}: empty image")
    _check_ends(data[:16], data[-_TAIL:], where)
    _check_header(io.BytesIO(data), where)


def check_image_file(path: os.PathLike) -> None:
    """``check_image_bytes`` for a file, reading only its first and last bytes and header."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path}: empty image file")
    with open(path, "rb") as fh:
        head = fh.read(16)
        fh.seek(max(0, size - _TAIL))
        tail = fh.read()
        _check_ends(head, tail, str(path))
        fh.seek(0)
        _check_header(fh, str(path))


def _check_ends(head: bytes, tail: bytes, where: str) -> None:
    if not any(head.startswith(sig) for sig, _ in SIGNATURES) and not head.startswith(_PNM):
        raise DatasetError(f"{where}: not an image (starts with {head[:8]!r}; expected JPEG, "
                           "PNG, BMP, WebP, TIFF or PNM)")
    if head.startswith(b"\xff\xd8") and b"\xff\xd9" not in tail:
        raise DatasetError(f"{where}: truncated JPEG (no end-of-image marker)")
    if head.startswith(b"\x89PNG") and b"IEND" not in tail[-16:]:
        raise DatasetError(f"{where}: truncated PNG (no IEND chunk)")


def _check_header(stream, where: str) -> None:
    try:
        from PIL import Image
    except ImportError:  # pillow comes with torchvision; without it the ends check stays
        return
    try:
        with Image.open(stream) as im:
            w, h = im.size
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for a bad header
        raise DatasetError(f"{where}: image header cannot be read ({exc})") from None
    if w <= 0 or h <= 0:
        raise DatasetError(f"{where}: image of size {w}x{h}")
