"""InsightFace / face.evoLVe verification ``.bin`` files (lfw, cfp_ff, cfp_fp, agedb_30, calfw,
cplfw, vgg2_fp), read WITHOUT trusting pickle.

The files are a pickle of ``(bins, issame_list)``: ``bins`` is a list of 2N encoded images
(JPEG/PNG bytes; Python 2 ``str`` in the original files, read as bytes), ``issame_list`` N
booleans for the consecutive image pairs (0,1), (2,3), .... The reader's unpickler admits only
that structure; any other global (the way a malicious pickle runs code) is refused by name
before anything is called. The faces are 112x112 crops aligned to the ArcFace template.
"""
from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from face_perception.data.errors import DatasetError
from face_perception.files import atomic_write_bytes

VERIFICATION_SETS = ("lfw", "cfp_ff", "cfp_fp", "agedb_30", "calfw", "cplfw", "vgg2_fp")
# Encoded image signatures accepted in a .bin (real files hold JPEG; packers copy image files).
_SIGNATURES = (b"\xff\xd8", b"\x89PNG", b"BM")


def _is_encoded_image(data) -> bool:
    return any(bytes(data[:len(sig)]) == sig for sig in _SIGNATURES)


# ---------------------------------------------------------------------------- restricted pickle
class _ArraySpec:
    """What a pickled numpy array says about itself; turned into an array by our own code."""

    def __init__(self, shape=None, dtype=None, data=None):
        self.shape, self.dtype, self.data = shape, dtype, data

    def __setstate__(self, state):
        # ndarray state: (version, shape, dtype, is_fortran, raw bytes)
        if not isinstance(state, tuple) or len(state) != 5:
            raise pickle.UnpicklingError(f"unexpected numpy array state {type(state).__name__}")
        _, self.shape, self.dtype, _, self.data = state


class _DTypeSpec:
    def __init__(self, code):
        self.code = code.decode("ascii") if isinstance(code, bytes) else code

    def __setstate__(self, state):  # byte order etc.: irrelevant for one-byte booleans
        pass


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY:
        raise pickle.UnpicklingError("numpy _reconstruct of something other than ndarray")
    return _ArraySpec()


def _frombuffer(buf, dtype, shape, order):
    # bytes(n) of an int would allocate n zero bytes: only real buffers are accepted.
    if not isinstance(buf, (bytes, bytearray, memoryview, pickle.PickleBuffer)):
        raise pickle.UnpicklingError("numpy _frombuffer without a byte buffer")
    return _ArraySpec(shape, dtype, bytes(buf))


def _scalar(dtype, data=None):
    """A numpy scalar; only booleans (numpy.bool_) belong in a .bin."""
    if not isinstance(dtype, _DTypeSpec) or dtype.code not in ("b1", "?"):
        raise pickle.UnpicklingError("numpy scalar of a type other than bool")
    if not isinstance(data, (bytes, str)) or len(data) != 1:
        raise pickle.UnpicklingError("malformed numpy bool scalar")
    return (data if isinstance(data, bytes) else data.encode("latin-1")) != b"\x00"


def _codecs_encode(text, encoding="utf-8"):
    # Python 3 writes bytes at protocol 2 as _codecs.encode(str, 'latin1').
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    return text.encode("latin-1")


def _bytearray(*args):
    if not args:
        return bytearray()
    if len(args) == 1 and isinstance(args[0], (bytes, bytearray)):
        return bytearray(args[0])
    if len(args) == 2 and isinstance(args[0], str) and args[1] in ("latin1", "latin-1"):
        return bytearray(args[0].encode("latin-1"))
    raise pickle.UnpicklingError("bytearray built from something other than bytes")


_NDARRAY = object()  # stands for numpy.ndarray; the real class is never handed to the pickle
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.multiarray", "scalar"): _scalar,
    ("numpy._core.multiarray", "scalar"): _scalar,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): lambda code, *_: _DTypeSpec(code),
    ("_codecs", "encode"): _codecs_encode,
    ("builtins", "bytearray"): _bytearray,
    ("__builtin__", "bytearray"): _bytearray,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals above, each to a harmless stand-in of our own."""

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Forbidden(f"{module}.{name}") from None


class _Forbidden(pickle.UnpicklingError):
    pass


# ---------------------------------------------------------------------------- the dataset
@dataclass
class VerificationBin:
    """A verification set in memory: encoded images and one label per consecutive pair."""

    images: List[bytes]
    issame: np.ndarray
    name: str = ""
    path: Optional[Path] = None

    def __len__(self) -> int:
        return len(self.issame)

    def decode(self, index: int, color_order: str = "bgr") -> np.ndarray:
        """Image ``index`` (0 .. 2N-1) as HxWx3 uint8 in ``color_order``."""
        from face_perception.imageio import ImageError, decode_image

        data = self.images[index]
        try:
            return decode_image(data, color_order=color_order)
        except ImageError:
            raise DatasetError(f"{self.path or self.name}: image {index} cannot be decoded "
                               f"({len(data)} bytes starting {bytes(data[:4])!r})") from None

    def pair(self, i: int) -> Tuple[np.ndarray, np.ndarray, bool]:
        """Pair ``i``: (first image BGR, second image BGR, issame)."""
        return self.decode(2 * i), self.decode(2 * i + 1), bool(self.issame[i])


def read_verification_bin(path: Union[str, os.PathLike]) -> VerificationBin:
    """Read a ``.bin`` verification set; DatasetError for anything but the expected structure."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"verification .bin not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = _RestrictedUnpickler(f, encoding="bytes").load()
    except _Forbidden as exc:
        raise DatasetError(
            f"{path}: refused to load: the pickle asks for {exc}, which a verification .bin "
            "never contains (only image bytes and booleans); the file is not a verification "
            "set or was crafted to run code") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable verification .bin (truncated or "
                           f"corrupt pickle: {type(exc).__name__}: {exc})") from None
    bins, issame = _check_structure(obj, path)
    return VerificationBin(bins, issame, name=path.stem, path=path)


def _check_structure(obj, path: Path) -> Tuple[List[bytes], np.ndarray]:
    if not isinstance(obj, (tuple, list)) or len(obj) != 2:
        raise DatasetError(f"{path}: expected a pickled (images, issame_list) pair, got "
                           f"{type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)):
        raise DatasetError(f"{path}: images must be a list, got {type(bins).__name__}")
    images: List[bytes] = []
    for i, b in enumerate(bins):
        if isinstance(b, _ArraySpec):  # some writers store the encoded bytes as a uint8 array
            b = _array_from_spec(b, path, ("u1", "i1"), "image")
            b = b.tobytes()
        if not isinstance(b, (bytes, bytearray)):
            raise DatasetError(f"{path}: image {i} is a {type(b).__name__}, not encoded bytes")
        if not _is_encoded_image(b):
            raise DatasetError(f"{path}: image {i} is not JPEG, PNG or BMP data "
                               f"(starts {bytes(b[:4])!r})")
        images.append(bytes(b))
    if isinstance(issame, _ArraySpec):
        labels = _array_from_spec(issame, path, ("b1", "?"), "issame")
    elif isinstance(issame, (list, tuple)):
        if not all(isinstance(v, bool) or (isinstance(v, int) and v in (0, 1)) for v in issame):
            bad = next(v for v in issame if not isinstance(v, (bool, int)) or v not in (0, 1))
            raise DatasetError(f"{path}: issame_list holds {bad!r}; expected booleans")
        labels = np.array(issame, dtype=bool)
    else:
        raise DatasetError(f"{path}: issame_list must be a list of booleans, got "
                           f"{type(issame).__name__}")
    if len(labels) == 0 or len(images) != 2 * len(labels):
        raise DatasetError(f"{path}: {len(images)} images for {len(labels)} pairs; a "
                           "verification set has exactly two images per pair")
    return images, labels


def _array_from_spec(spec: _ArraySpec, path: Path, codes: Tuple[str, ...], what: str):
    """Build a 1-D array of one-byte elements from a pickled array's raw bytes, ourselves."""
    dtype = spec.dtype
    shape = spec.shape
    if (not isinstance(dtype, _DTypeSpec) or dtype.code not in codes
            or not isinstance(shape, tuple) or len(shape) != 1
            or not isinstance(spec.data, (bytes, bytearray)) or len(spec.data) != shape[0]):
        raise DatasetError(f"{path}: {what} is a numpy array of an unexpected kind "
                           f"(dtype {getattr(dtype, 'code', dtype)!r}, shape {shape!r})")
    raw = np.frombuffer(bytes(spec.data), dtype=np.uint8)
    if codes[0] == "b1":
        if (raw > 1).any():
            raise DatasetError(f"{path}: {what} array holds values other than 0/1")
        return raw.astype(bool)
    return raw.copy()


def write_verification_bin(path: Union[str, os.PathLike], images: Sequence, issame: Sequence,
                           quality: int = 95) -> Path:
    """Write a verification set in the InsightFace layout (readable by their loaders too).

    images: 2N encoded images (bytes) or BGR uint8 arrays (JPEG-encoded here); issame: N
    booleans. Written atomically (files.atomic_write_bytes).
    """
    import cv2

    path = Path(path)
    labels = [bool(v) for v in issame]
    if len(images) != 2 * len(labels) or not labels:
        raise DatasetError(f"need two images per pair: got {len(images)} images for "
                           f"{len(labels)} pairs")
    bins: List[bytes] = []
    for i, img in enumerate(images):
        if isinstance(img, (bytes, bytearray)):
            if not _is_encoded_image(img):
                raise DatasetError(f"image {i}: bytes are not JPEG, PNG or BMP data")
            bins.append(bytes(img))
            continue
        arr = np.asarray(img)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise DatasetError(f"image {i}: expected BGR uint8 HxWx3, got {arr.dtype} "
                               f"{arr.shape}")
        ok, buf = cv2.imencode(".jpg", arr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise DatasetError(f"image {i}: JPEG encoding failed")
        bins.append(buf.tobytes())
    buf = io.BytesIO()
    pickle.dump((bins, labels), buf, protocol=4)
    return atomic_write_bytes(path, buf.getvalue())


def find_verification_bins(folder: Union[str, os.PathLike]) -> dict:
    """{set name: path} for the standard verification sets present in ``folder``."""
    folder = Path(folder)
    return {name: folder / f"{name}.bin" for name in VERIFICATION_SETS
            if (folder / f"{name}.bin").is_file()}
