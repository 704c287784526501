"""Where images enter the core: read files and validate arrays into BGR uint8 HxWx3.

Colour order is converted once, here; everything downstream works in BGR (OpenCV, ROS bgr8).
"""
from __future__ import annotations

import os
from typing import Union

import cv2
import numpy as np

ImageLike = Union[str, os.PathLike, np.ndarray]

# File suffixes the command line treats as images when it expands a folder argument.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm",
                            ".ppm"})


class ImageError(ValueError):
    """An image that cannot be used: unreadable file or an array of the wrong shape/type."""


def read_image_bgr(path: Union[str, os.PathLike]) -> np.ndarray:
    """Read an image file as BGR uint8 (HxWx3). Raises ImageError naming the path."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageError(f"image file not found: {path}")
    return decode_image(np.fromfile(path, dtype=np.uint8), path)


def decode_image(data: Union[bytes, np.ndarray], where: str = "image bytes",
                 color_order: str = "bgr") -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, ...) -> contiguous uint8 HxWx3 in ``color_order``, the
    one decode of the package: grey and alpha images become 3 channels, 16-bit ones 8-bit, the
    file's pixels are taken as stored (no EXIF rotation). Raises ImageError naming ``where``
    (the file or record the bytes came from)."""
    buf = np.frombuffer(data, np.uint8) if isinstance(data, (bytes, bytearray)) else data
    if buf.size == 0:
        raise ImageError(f"image file is empty: {where}")
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ImageError(f"cannot decode image (corrupt or unsupported format): {where}")
    if img.dtype == np.uint16:
        img = (img / 257).astype(np.uint8)
    try:
        bgr = to_bgr_uint8(img)
    except ImageError as exc:
        raise ImageError(f"{where}: {exc}") from None
    if color_order not in ("bgr", "rgb"):
        raise ImageError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    return bgr if color_order == "bgr" else np.ascontiguousarray(bgr[:, :, ::-1])


def to_bgr_uint8(img: np.ndarray, color_order: str = "bgr") -> np.ndarray:
    """Validate an array and return it as contiguous BGR uint8 HxWx3.

    Accepts HxW (grayscale), HxWx1, HxWx3 (``color_order`` 'bgr' or 'rgb') and HxWx4 (BGRA or
    RGBA). Refuses empty, zero-size, non-uint8 and wrong-channel arrays with a clear message,
    before any model sees them.
    """
    if not isinstance(img, np.ndarray):
        raise ImageError(f"expected a numpy array image, got {type(img).__name__}")
    if img.dtype != np.uint8:
        raise ImageError(
            f"expected a uint8 image, got dtype {img.dtype}; convert it first "
            "(e.g. np.clip(img * 255, 0, 255).astype(np.uint8) for float images in [0, 1])")
    if img.ndim not in (2, 3):
        raise ImageError(f"expected an HxW or HxWxC image, got shape {img.shape}")
    if img.shape[0] == 0 or img.shape[1] == 0:
        raise ImageError(f"image has zero size: shape {img.shape}")
    if color_order not in ("bgr", "rgb"):
        raise ImageError(f"color_order must be 'bgr' or 'rgb', got {color_order!r}")
    if img.ndim == 2 or img.shape[2] == 1:
        return np.ascontiguousarray(cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR))
    channels = img.shape[2]
    if channels == 3:
        out = img[:, :, ::-1] if color_order == "rgb" else img
        return np.ascontiguousarray(out)
    if channels == 4:
        code = cv2.COLOR_RGBA2BGR if color_order == "rgb" else cv2.COLOR_BGRA2BGR
        return np.ascontiguousarray(cv2.cvtColor(img, code))
    raise ImageError(f"expected 1, 3 or 4 channels, got {channels} (shape {img.shape})")


def load_bgr(image: ImageLike) -> np.ndarray:
    """A path or an array -> validated BGR uint8 array."""
    if isinstance(image, (str, os.PathLike)):
        return read_image_bgr(image)
    return to_bgr_uint8(image)


def expand_image_paths(paths) -> list:
    """Files as given; folders expand to the image files directly inside them (sorted)."""
    from pathlib import Path

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(c for c in p.iterdir() if c.suffix.lower() in IMAGE_SUFFIXES))
        else:
            out.append(p)
    return out
