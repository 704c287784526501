"""Pixel payloads of ROS image messages <-> BGR arrays, without ROS.

Works on any object with the fields of sensor_msgs/Image (height, width, encoding, is_bigendian,
step, data) or sensor_msgs/CompressedImage (format, data): rclpy messages and the rosbags
library's deserialised messages alike, so the nodes and the offline bag tools share one decoder.
"""
from __future__ import annotations

import sys

import cv2
import numpy as np

from face_perception.imageio import ImageError, decode_image

# Packed encodings of sensor_msgs/image_encodings.hpp: encoding -> (channels, bytes per
# channel) of one pixel as laid out in a row. "uyvy"/"yuyv" are the current names of the
# deprecated "yuv422"/"yuv422_yuy2" (same bytes: U Y0 V Y1 and Y0 U Y1 V per pixel pair).
PACKED = {
    "bgr8": (3, 1), "rgb8": (3, 1), "bgra8": (4, 1), "rgba8": (4, 1), "mono8": (1, 1),
    "bgr16": (3, 2), "rgb16": (3, 2), "bgra16": (4, 2), "rgba16": (4, 2),
    "yuv422": (2, 1), "uyvy": (2, 1), "yuv422_yuy2": (2, 1), "yuyv": (2, 1),
    "bayer_rggb8": (1, 1), "bayer_bggr8": (1, 1), "bayer_gbrg8": (1, 1), "bayer_grbg8": (1, 1),
    "bayer_rggb16": (1, 2), "bayer_bggr16": (1, 2), "bayer_gbrg16": (1, 2),
    "bayer_grbg16": (1, 2),
}
# Planar YUV: a Y plane of ``height`` rows of ``step`` bytes, then the interleaved V/U plane:
# nv21 4:2:0 (height/2 rows of ``step`` bytes, even width and height), nv24 4:4:4 (height
# rows of 2 * ``step`` bytes), as V4L2 lays them out (bytesperline = step).
PLANAR = ("nv21", "nv24")
ENCODINGS = (*PACKED, *PLANAR)
_YUV422 = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
# OpenCV code that turns the (8-bit) pixels into BGR; None = already BGR. OpenCV names Bayer
# patterns by the second row's 2nd-3rd pixels: ROS bayer_rggb is OpenCV's BayerBG (as
# cv_bridge maps them).
_TO_BGR = {
    "bgr8": None, "bgr16": None, "rgb8": cv2.COLOR_RGB2BGR, "rgb16": cv2.COLOR_RGB2BGR,
    "bgra8": cv2.COLOR_BGRA2BGR, "bgra16": cv2.COLOR_BGRA2BGR,
    "rgba8": cv2.COLOR_RGBA2BGR, "rgba16": cv2.COLOR_RGBA2BGR, "mono8": cv2.COLOR_GRAY2BGR,
    "yuv422": cv2.COLOR_YUV2BGR_UYVY, "uyvy": cv2.COLOR_YUV2BGR_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUY2, "yuyv": cv2.COLOR_YUV2BGR_YUY2,
    "bayer_rggb": cv2.COLOR_BayerBG2BGR, "bayer_bggr": cv2.COLOR_BayerRG2BGR,
    "bayer_gbrg": cv2.COLOR_BayerGR2BGR, "bayer_grbg": cv2.COLOR_BayerGB2BGR,
}
# Encodings refused with the reason: depth and 16-bit grey images carry no face appearance the
# models know (and scaling a depth range to 8 bit gives a picture of distances, not faces).
_NOT_A_FACE_IMAGE = ("a depth or 16-bit grey (infrared) image, not a camera picture of faces; "
                     "subscribe the camera's colour or mono8 stream instead")
REFUSED = {"mono16": _NOT_A_FACE_IMAGE, "16uc1": _NOT_A_FACE_IMAGE,
           "32fc1": _NOT_A_FACE_IMAGE}
# CompressedImage.format is "jpeg", "png" or the image_transport form "bgr8; jpeg compressed bgr8".
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ImageMessageError(ImageError):
    """An image message whose payload cannot be turned into pixels (truncated, zero size...)."""


class UnsupportedEncodingError(ImageMessageError):
    """An image message in an encoding this package does not convert (e.g. 32FC1, yuv420)."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        reason = REFUSED.get(str(encoding).strip().lower())
        why = f" ({reason})" if reason else ""
        super().__init__(
            f"unsupported image encoding {encoding!r}{why}; supported: {', '.join(ENCODINGS)} "
            f"and compressed {'/'.join(COMPRESSED_FORMATS[::2])}")


def raw_to_bgr(height: int, width: int, encoding: str, step: int, data, is_bigendian: int = 0,
               ) -> np.ndarray:
    """Decode a sensor_msgs/Image payload into a contiguous BGR uint8 HxWx3 array.

    Honours row padding (``step`` larger than width * pixel size) and the byte order of 16-bit
    data; 16-bit colour is scaled to 8 bit (65535 -> 255). Raises UnsupportedEncodingError for
    other encodings and ImageMessageError for zero-size, inconsistent or truncated payloads.
    """
    enc = str(encoding).strip().lower()
    if enc not in ENCODINGS:
        raise UnsupportedEncodingError(str(encoding))
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise ImageMessageError(f"{enc} image has zero size: {width}x{height}")
    if enc in PLANAR:
        return _planar_to_bgr(enc, height, width, step, payload_bytes(data))
    if enc in _YUV422 and width % 2:
        raise ImageMessageError(f"{enc} image width {width} is odd: pixels come in pairs")
    channels, depth = PACKED[enc]
    rows = _rows(payload_bytes(data), enc, height, width * channels * depth, step)
    if depth == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
        pixels = pixels.astype(np.uint16)  # native byte order for OpenCV
    else:
        pixels = np.ascontiguousarray(rows).reshape(height, width, channels)
    if enc.startswith("bayer_"):
        # Demosaic at full depth, then scale: interpolation before rounding.
        bgr = cv2.cvtColor(pixels[:, :, 0], _TO_BGR[enc[:10]])
        return _to_8bit(bgr) if depth == 2 else bgr
    if depth == 2:
        pixels = _to_8bit(pixels)
    code = _TO_BGR[enc]
    if code is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels[:, :, 0] if channels == 1 else pixels, code)


def _to_8bit(pixels16: np.ndarray) -> np.ndarray:
    # Same mapping as imageio.read_image_bgr for 16-bit files: 0..65535 -> 0..255.
    return np.round(pixels16.astype(np.float32) / 257.0).astype(np.uint8)


def _rows(buf: np.ndarray, enc: str, height: int, row_bytes: int, step: int) -> np.ndarray:
    """``height`` rows of ``row_bytes`` from a payload of rows ``step`` bytes apart."""
    if step < row_bytes:
        raise ImageMessageError(
            f"{enc} image step {step} is smaller than width * pixel size = {row_bytes}")
    # The last row may omit its padding; anything shorter than that is truncated.
    needed = step * (height - 1) + row_bytes
    if buf.size < needed:
        raise ImageMessageError(
            f"{enc} image (step {step}) needs {needed} bytes for {height} rows, got {buf.size} "
            "(truncated message)")
    if buf.size < step * height:
        buf = np.concatenate([buf[:needed], np.zeros(step * height - needed, np.uint8)])
    return buf[: step * height].reshape(height, step)[:, :row_bytes]


def _planar_to_bgr(enc: str, height: int, width: int, step: int, buf: np.ndarray,
                   ) -> np.ndarray:
    if enc == "nv21" and (width % 2 or height % 2):
        raise ImageMessageError(f"nv21 image {width}x{height}: width and height must be even")
    luma = _rows(buf[: step * height], enc, height, width, step)
    if buf.size <= step * height:
        raise ImageMessageError(f"{enc} image {width}x{height} (step {step}) has no chroma "
                                f"plane: got {buf.size} bytes (truncated message)")
    rest = buf[step * height:]
    if enc == "nv21":
        chroma = _rows(rest, enc, height // 2, width, step)
        return cv2.cvtColor(np.vstack([luma, chroma]), cv2.COLOR_YUV2BGR_NV21)
    chroma = _rows(rest, enc, height, 2 * width, 2 * step)
    # OpenCV has no 4:4:4 semi-planar decoder: an NV21 image twice the size, whose 2x2 luma
    # blocks share one chroma pair, decodes with OpenCV's own (BT.601) coefficients.
    big_luma = np.repeat(np.repeat(luma, 2, axis=0), 2, axis=1)
    big = cv2.cvtColor(np.vstack([big_luma, chroma.reshape(height, 2 * width)]),
                       cv2.COLOR_YUV2BGR_NV21)
    return np.ascontiguousarray(big[::2, ::2])


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
    try:
        return decode_image(buf)
    except ImageError:
        raise ImageMessageError(f"cannot decode compressed {kind} image ({buf.size} bytes; "
                                "corrupt or truncated)") from None


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
