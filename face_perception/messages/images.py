"""Pixel payloads of ROS image messages <-> BGR arrays, without ROS.

Works on any object with the fields of sensor_msgs/Image (height, width, encoding, is_bigendian,
step, data) or sensor_msgs/CompressedImage (format, data): rclpy messages and the rosbags
library's deserialised messages alike, so the nodes and the offline bag tools share one decoder.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from face_perception.imageio import ImageError

# encoding -> (channels, bytes per channel); what the decoder accepts.
ENCODINGS = {
    "bgr8": (3, 1),
    "rgb8": (3, 1),
    "bgra8": (4, 1),
    "rgba8": (4, 1),
    "mono8": (1, 1),
    "mono16": (1, 2),
}
# CompressedImage.format is "jpeg", "png" or the image_transport form "bgr8; jpeg compressed bgr8".
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageMessageError(ImageError):
    """An image message whose payload cannot be turned into pixels (truncated, zero size...)."""


class UnsupportedEncodingError(ImageMessageError):
    """An image message in an encoding this package does not convert (e.g. yuv422, 32FC1)."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        super().__init__(
            f"unsupported image encoding {encoding!r}; supported: {', '.join(ENCODINGS)} "
            f"and compressed {'/'.join(COMPRESSED_FORMATS[::2])}")


def raw_to_bgr(height: int, width: int, encoding: str, step: int, data, is_bigendian: int = 0,
               ) -> np.ndarray:
    """Decode a sensor_msgs/Image payload into a contiguous BGR uint8 HxWx3 array.

    Honours row padding (``step`` larger than width * pixel size) and the byte order of 16-bit
    data; mono16 is scaled to 8 bit (65535 -> 255). Raises UnsupportedEncodingError for other
    encodings and ImageMessageError for zero-size, inconsistent or truncated payloads.
    """
    enc = str(encoding).strip().lower()
    if enc not in ENCODINGS:
        raise UnsupportedEncodingError(str(encoding))
    channels, depth = ENCODINGS[enc]
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageMessageError(f"{enc} image has zero size: {width}x{height}")
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageMessageError(
            f"{enc} image step {step} is smaller than width * pixel size = {row_bytes}")
    buf = payload_bytes(data)
    # The last row may omit its padding; anything shorter than that is truncated.
    needed = step * (height - 1) + row_bytes
    if buf.size < needed:
        raise ImageMessageError(
            f"{enc} image {width}x{height} (step {step}) needs {needed} bytes, got {buf.size} "
            "(truncated message)")
    if buf.size < step * height:
        buf = np.concatenate([buf[:needed], np.zeros(step * height - needed, np.uint8)])
    rows = buf[: step * height].reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        mono16 = np.ascontiguousarray(rows).view(dtype).reshape(height, width)
        # Same mapping as imageio.read_image_bgr for 16-bit files: 0..65535 -> 0..255.
        gray = np.round(mono16.astype(np.float32) / 257.0).astype(np.uint8)
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    pixels = rows.reshape(height, width, channels)
    if enc == "bgr8":
        return np.ascontiguousarray(pixels)
    if enc == "rgb8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    if enc == "bgra8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_BGRA2BGR)
    if enc == "rgba8":
        return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGBA2BGR)
    return cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]), cv2.COLOR_GRAY2BGR)


def payload_bytes(data) -> np.ndarray:
    """A message's ``data`` (bytes, array.array('B'), numpy array, list) as a flat uint8 view."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def compressed_to_bgr(fmt: str, data) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage payload (jpeg or png) into BGR uint8 HxWx3."""
    kind = _compressed_kind(fmt)
    buf = payload_bytes(data)
    if buf.size == 0:
        raise ImageMessageError(f"compressed {kind} image is empty")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise ImageMessageError(f"cannot decode compressed {kind} image ({buf.size} bytes; "
                                "corrupt or truncated)")
    return img


def _compressed_kind(fmt: str) -> str:
    # "bgr8; jpeg compressed bgr8" -> "jpeg"; plain "png" -> "png".
    text = str(fmt).lower()
    for kind in COMPRESSED_FORMATS:
        if kind in text.replace(";", " ").split():
            return "jpeg" if kind == "jpg" else kind
    raise UnsupportedEncodingError(f"compressed:{fmt}")


def bgr_to_raw(image_bgr: np.ndarray) -> dict:
    """Fields of a bgr8 sensor_msgs/Image for a BGR uint8 array (height, width, encoding, ...)."""
    img = np.ascontiguousarray(image_bgr)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ImageMessageError(f"expected a BGR uint8 HxWx3 array, got {img.dtype} {img.shape}")
    height, width = img.shape[:2]
    return {"height": height, "width": width, "encoding": "bgr8",
            "is_bigendian": int(sys.byteorder == "big"), "step": width * 3, "data": img}


def bgr_to_compressed(image_bgr: np.ndarray, kind: str = "jpeg", quality: int = 90) -> dict:
    """Fields of a sensor_msgs/CompressedImage (format, data) for a BGR uint8 array."""
    if kind not in ("jpeg", "png"):
        raise ValueError(f"compressed kind must be 'jpeg' or 'png', got {kind!r}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if kind == "jpeg" else []
    ok, buf = cv2.imencode(".jpg" if kind == "jpeg" else ".png", image_bgr, params)
    if not ok:
        raise ImageMessageError(f"cannot encode image as {kind}")
    return {"format": f"bgr8; {kind} compressed bgr8", "data": buf.reshape(-1)}
