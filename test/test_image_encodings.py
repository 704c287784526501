"""Camera encodings (sensor_msgs/image_encodings.hpp) decoded like OpenCV's own conversions.

Each payload is built from a real photo with OpenCV (or, for Bayer mosaics, sampled by the
encoding's definition), sent through raw_to_bgr with and without row padding, and compared with
OpenCV's conversion of the same bytes; odd widths where the encoding allows them.
"""
import cv2
import numpy as np
import pytest

from face_perception.messages.images import (
    ImageMessageError,
    UnsupportedEncodingError,
    raw_to_bgr,
)

JUNK = 0xAB


@pytest.fixture(scope="module")
def photo(photos):
    return cv2.imread(str(photos / "obama.jpg"))


def crop(photo, height, width):
    return np.ascontiguousarray(photo[40:40 + height, 60:60 + width])


def pad_rows(rows: np.ndarray, pad: int) -> tuple[bytes, int]:
    """H x row_bytes -> payload with ``pad`` junk bytes after every row, and its step."""
    junk = np.full((rows.shape[0], pad), JUNK, np.uint8)
    return np.hstack([rows, junk]).tobytes(), rows.shape[1] + pad


def mean_error(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


SIXTEEN = {"bgr16": None, "rgb16": cv2.COLOR_BGR2RGB, "bgra16": cv2.COLOR_BGR2BGRA,
           "rgba16": cv2.COLOR_BGR2RGBA}


@pytest.mark.parametrize("bigendian", [0, 1])
@pytest.mark.parametrize("pad", [0, 6])
@pytest.mark.parametrize("encoding", list(SIXTEEN))
def test_16_bit_colour_matches_opencv_scaling(photo, encoding, pad, bigendian):
    img = crop(photo, 97, 151)  # odd width
    rng = np.random.default_rng(1)
    # A real 16-bit picture of the photo: 8-bit values * 257 plus sub-level detail.
    bgr16 = (img.astype(np.int32) * 257 + rng.integers(-128, 128, img.shape)).clip(0, 65535)
    bgr16 = bgr16.astype(np.uint16)
    code = SIXTEEN[encoding]
    pixels = bgr16 if code is None else cv2.cvtColor(bgr16, code)
    raw = pixels.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(97, -1)
    data, step = pad_rows(raw, pad)
    out = raw_to_bgr(97, 151, encoding, step, data, is_bigendian=bigendian)
    expected = cv2.convertScaleAbs(bgr16, alpha=1 / 257)  # OpenCV's 16 -> 8 bit, rounded
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(out, img)


YUV422 = {"yuv422": (cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
          "uyvy": (cv2.COLOR_BGR2YUV_UYVY, cv2.COLOR_YUV2BGR_UYVY),
          "yuv422_yuy2": (cv2.COLOR_BGR2YUV_YUY2, cv2.COLOR_YUV2BGR_YUY2),
          "yuyv": (cv2.COLOR_BGR2YUV_YUY2, cv2.COLOR_YUV2BGR_YUY2)}


@pytest.mark.parametrize("pad", [0, 10])
@pytest.mark.parametrize("encoding", list(YUV422))
def test_yuv422_matches_opencv(photo, encoding, pad):
    img = crop(photo, 97, 150)
    to_yuv, to_bgr = YUV422[encoding]
    packed = cv2.cvtColor(img, to_yuv)  # H x W x 2: U Y0 V Y1 (uyvy) or Y0 U Y1 V (yuyv)
    data, step = pad_rows(packed.reshape(97, -1), pad)
    out = raw_to_bgr(97, 150, encoding, step, data)
    np.testing.assert_array_equal(out, cv2.cvtColor(packed, to_bgr))
    assert mean_error(out, img) < 4
    # The two byte orders really differ: reading one as the other is far off.
    other = cv2.COLOR_YUV2BGR_YUY2 if to_bgr == cv2.COLOR_YUV2BGR_UYVY \
        else cv2.COLOR_YUV2BGR_UYVY
    assert mean_error(cv2.cvtColor(packed, other), img) > 20


def test_yuv422_odd_width_is_refused_clearly():
    with pytest.raises(ImageMessageError, match="width 5 is odd"):
        raw_to_bgr(4, 5, "yuyv", 10, bytes(40))


def nv21_planes(img):
    """Y plane and interleaved V/U plane (H/2 x W) of ``img`` by OpenCV's I420 conversion."""
    h, w = img.shape[:2]
    i420 = cv2.cvtColor(img, cv2.COLOR_BGR2YUV_I420).reshape(-1)
    y = i420[: h * w].reshape(h, w)
    u = i420[h * w: h * w * 5 // 4].reshape(h // 2, w // 2)
    v = i420[h * w * 5 // 4:].reshape(h // 2, w // 2)
    return y, np.dstack([v, u]).reshape(h // 2, w)


@pytest.mark.parametrize("pad", [0, 7])
def test_nv21_matches_opencv(photo, pad):
    img = crop(photo, 96, 150)
    y, vu = nv21_planes(img)
    y_data, step = pad_rows(y, pad)
    vu_data, _ = pad_rows(vu, pad)
    out = raw_to_bgr(96, 150, "nv21", step, y_data + vu_data)
    np.testing.assert_array_equal(out, cv2.cvtColor(np.vstack([y, vu]), cv2.COLOR_YUV2BGR_NV21))
    assert mean_error(out, img) < 4


def test_nv21_odd_size_and_missing_chroma_are_refused():
    with pytest.raises(ImageMessageError, match="must be even"):
        raw_to_bgr(5, 4, "nv21", 4, bytes(30))
    with pytest.raises(ImageMessageError, match="no chroma plane"):
        raw_to_bgr(4, 4, "nv21", 4, bytes(16))
    with pytest.raises(ImageMessageError, match="truncated"):
        raw_to_bgr(4, 4, "nv21", 4, bytes(20))


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("width", [150, 151])
def test_nv24_matches_opencv(photo, pad, width):
    """Full-resolution chroma: where a 2x2 block shares one chroma pair (chroma of the photo
    upsampled), the NV24 image must decode exactly as OpenCV decodes the NV21 image."""
    img = crop(photo, 96, 152)
    y, vu = nv21_planes(img)
    vu_full = np.repeat(np.repeat(vu.reshape(48, 76, 2), 2, axis=0), 2, axis=1)
    expected = cv2.cvtColor(np.vstack([y, vu]), cv2.COLOR_YUV2BGR_NV21)[:, :width]
    y, vu_full = y[:, :width], vu_full[:, :width].reshape(96, 2 * width)
    y_data, step = pad_rows(y, pad)
    vu_data, chroma_step = pad_rows(vu_full, 2 * pad)
    assert chroma_step == 2 * step
    out = raw_to_bgr(96, width, "nv24", step, y_data + vu_data)
    np.testing.assert_array_equal(out, expected)
    assert mean_error(out, img[:, :width]) < 4


# Bayer patterns by their definition: the colour of the 2x2 cell's pixels, row by row.
BAYER = {"rggb": "RGGB", "bggr": "BGGR", "gbrg": "GBRG", "grbg": "GRBG"}
CHANNEL = {"B": 0, "G": 1, "R": 2}


def mosaic(img, pattern: str) -> np.ndarray:
    out = np.empty(img.shape[:2], img.dtype)
    for i, colour in enumerate(pattern):
        dy, dx = divmod(i, 2)
        out[dy::2, dx::2] = img[dy::2, dx::2, CHANNEL[colour]]
    return out


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("name", list(BAYER))
def test_bayer8_matches_opencv_demosaic_of_the_right_pattern(photo, name, pad):
    img = crop(photo, 97, 151)  # odd width and height
    raw = mosaic(img, BAYER[name])
    data, step = pad_rows(raw, pad)
    out = raw_to_bgr(97, 151, f"bayer_{name}8", step, data)
    errors = {}
    for code_name in ("BayerBG2BGR", "BayerRG2BGR", "BayerGR2BGR", "BayerGB2BGR"):
        errors[code_name] = mean_error(cv2.cvtColor(raw, getattr(cv2, f"COLOR_{code_name}")),
                                       img)
    # The decoder's choice is OpenCV's demosaic of the one pattern that fits best.
    best = min(errors, key=errors.get)
    np.testing.assert_array_equal(out, cv2.cvtColor(raw, getattr(cv2, f"COLOR_{best}")))
    assert errors[best] < 8 and sorted(errors.values())[1] > 2 * errors[best]


@pytest.mark.parametrize("bigendian", [0, 1])
def test_bayer16_demosaics_then_scales(photo, bigendian):
    img = crop(photo, 97, 151)
    raw16 = mosaic(img, "RGGB").astype(np.uint16) * 257
    data, step = pad_rows(raw16.astype(">u2" if bigendian else "<u2").view(np.uint8)
                          .reshape(97, -1), 4)
    out = raw_to_bgr(97, 151, "bayer_rggb16", step, data, is_bigendian=bigendian)
    expected = cv2.convertScaleAbs(cv2.cvtColor(raw16, cv2.COLOR_BayerBG2BGR), alpha=1 / 257)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1"])
def test_depth_and_mono16_are_refused_with_the_reason(encoding):
    with pytest.raises(UnsupportedEncodingError) as err:
        raw_to_bgr(4, 4, encoding, 16, bytes(64))
    assert err.value.encoding == encoding
    assert f"unsupported image encoding '{encoding}' (a depth or 16-bit grey" in str(err.value)
    assert "mono8" in str(err.value)
