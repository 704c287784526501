"""ROS-free image payload decoding and Face <-> Detection2D field mapping."""
import sys

import cv2
import numpy as np
import pytest

from face_perception.messages.face_fields import (
    LANDMARK_CLASS_IDS,
    DetectionFieldError,
    box_to_center_size,
    center_size_to_box,
    identity_hypothesis,
    landmark_hypotheses,
    landmarks_from_hypotheses,
    landmarks_from_legacy_id,
    track_id_from_field,
    track_id_to_field,
)
from face_perception.messages.images import (
    ImageMessageError,
    UnsupportedEncodingError,
    bgr_to_compressed,
    bgr_to_raw,
    compressed_to_bgr,
    raw_to_bgr,
)

H, W = 7, 5


def _bgr():
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (H, W, 3), dtype=np.uint8)


def _padded(rows: np.ndarray, pad: int) -> tuple[bytes, int]:
    """Rows (H x row_bytes) -> payload with ``pad`` junk bytes after each row, and the step."""
    junk = np.full((rows.shape[0], pad), 0xAB, np.uint8)
    return np.hstack([rows, junk]).tobytes(), rows.shape[1] + pad


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize("encoding", ["bgr8", "rgb8", "bgra8", "rgba8"])
def test_colour_encodings_decode_to_expected_bgr(encoding, pad):
    bgr = _bgr()
    alpha = np.full((H, W, 1), 200, np.uint8)
    pixels = {"bgr8": bgr, "rgb8": bgr[:, :, ::-1], "bgra8": np.dstack([bgr, alpha]),
              "rgba8": np.dstack([bgr[:, :, ::-1], alpha])}[encoding]
    data, step = _padded(np.ascontiguousarray(pixels).reshape(H, -1), pad)
    out = raw_to_bgr(H, W, encoding, step, data)
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, bgr)


def test_mono8_becomes_three_equal_channels():
    gray = _bgr()[:, :, 0]
    data, step = _padded(gray, 2)
    out = raw_to_bgr(H, W, "mono8", step, data)
    np.testing.assert_array_equal(out, np.dstack([gray] * 3))


def test_last_row_without_padding_is_accepted():
    bgr = _bgr()
    data, step = _padded(bgr.reshape(H, -1), 4)
    np.testing.assert_array_equal(raw_to_bgr(H, W, "bgr8", step, data[:-4]), bgr)


def test_truncated_payload_is_refused_with_sizes():
    data = _bgr().tobytes()
    with pytest.raises(ImageMessageError, match="truncated"):
        raw_to_bgr(H, W, "bgr8", W * 3, data[: len(data) // 2])


@pytest.mark.parametrize("height,width", [(0, 5), (5, 0), (0, 0)])
def test_zero_size_image_is_refused(height, width):
    with pytest.raises(ImageMessageError, match="zero size"):
        raw_to_bgr(height, width, "bgr8", width * 3, b"")


def test_step_smaller_than_row_is_refused():
    with pytest.raises(ImageMessageError, match="step"):
        raw_to_bgr(H, W, "bgr8", W * 3 - 1, bytes(H * W * 3))


@pytest.mark.parametrize("encoding", ["yuv420", "32FC1", "8UC3", ""])
def test_other_encodings_raise_unsupported_encoding(encoding):
    with pytest.raises(UnsupportedEncodingError) as err:
        raw_to_bgr(H, W, encoding, W * 2, bytes(H * W * 4))
    assert err.value.encoding == encoding


def test_png_compressed_roundtrip_is_exact(photos):
    img = cv2.imread(str(photos / "biden.jpg"))
    fields = bgr_to_compressed(img, "png")
    assert "png" in fields["format"]
    np.testing.assert_array_equal(compressed_to_bgr(fields["format"], fields["data"]), img)


def test_jpeg_compressed_decodes_close_to_original(photos):
    img = cv2.imread(str(photos / "obama.jpg"))
    fields = bgr_to_compressed(img, "jpeg", quality=95)
    out = compressed_to_bgr("jpeg", fields["data"].tobytes())
    assert out.shape == img.shape
    assert np.abs(out.astype(int) - img).mean() < 3


def test_corrupt_compressed_payload_is_refused():
    with pytest.raises(ImageMessageError, match="cannot decode"):
        compressed_to_bgr("jpeg", b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(ImageMessageError, match="empty"):
        compressed_to_bgr("png", b"")
    with pytest.raises(UnsupportedEncodingError):
        compressed_to_bgr("theora", b"abc")


def test_bgr_to_raw_roundtrip_real_photo(photos):
    img = cv2.imread(str(photos / "obama2.jpg"))
    f = bgr_to_raw(img)
    assert (f["height"], f["width"], f["encoding"], f["step"]) == (*img.shape[:2], "bgr8",
                                                                    img.shape[1] * 3)
    assert f["is_bigendian"] == int(sys.byteorder == "big")
    out = raw_to_bgr(f["height"], f["width"], f["encoding"], f["step"], f["data"].tobytes())
    np.testing.assert_array_equal(out, img)


def test_box_centre_size_roundtrip():
    box = np.array([10.5, 20.0, 110.5, 170.0], np.float32)
    cx, cy, w, h = box_to_center_size(box)
    assert (cx, cy, w, h) == (60.5, 95.0, 100.0, 150.0)
    np.testing.assert_allclose(center_size_to_box(cx, cy, w, h), box)
    with pytest.raises(DetectionFieldError, match="size"):
        center_size_to_box(1, 1, -3, 4)


LANDMARKS = np.array([[1.04, 2], [3, 4], [5, 6], [7, 8], [9, 10.26]], np.float32)


def test_landmarks_roundtrip_through_hypotheses_in_order():
    hyps = landmark_hypotheses(LANDMARKS)
    assert [h[0] for h in hyps] == ["landmark/left_eye", "landmark/right_eye", "landmark/nose",
                                    "landmark/mouth_left", "landmark/mouth_right"]
    assert hyps[4][1:] == pytest.approx((9.0, 10.26))  # full precision, no rounding
    # Any order, among other hypotheses (another node's classes), gives the same points.
    mixed = [("face", 0.0, 0.0), *reversed(hyps), ("person", 1.0, 1.0)]
    np.testing.assert_array_equal(landmarks_from_hypotheses(mixed), LANDMARKS)
    assert landmark_hypotheses(None) == []
    assert landmarks_from_hypotheses([("face", 0.0, 0.0)]) is None


def test_identity_hypothesis_reports_unknown_with_score_zero():
    from face_perception.types import Category

    assert identity_hypothesis(Category("obama", 0.93)) == ("obama", pytest.approx(0.93))
    assert identity_hypothesis(None) == ("unknown", 0.0)
    assert identity_hypothesis(None, unknown="nobody") == ("nobody", 0.0)


def test_stamps_to_nanoseconds_and_back():
    from types import SimpleNamespace

    from face_perception.messages.stamps import ns_to_sec_nanosec, stamp_to_ns

    assert stamp_to_ns(SimpleNamespace(sec=12, nanosec=345)) == 12_000_000_345
    assert ns_to_sec_nanosec(12_000_000_345) == (12, 345)
    assert stamp_to_ns(SimpleNamespace(sec=0, nanosec=999_999_999)) == 999_999_999



def test_incomplete_or_repeated_landmarks_are_refused():
    hyps = landmark_hypotheses(LANDMARKS)
    with pytest.raises(DetectionFieldError, match="missing.*landmark/nose"):
        landmarks_from_hypotheses(hyps[:2] + hyps[3:])
    with pytest.raises(DetectionFieldError, match="twice"):
        landmarks_from_hypotheses(hyps + hyps[:1])
    with pytest.raises(DetectionFieldError, match="finite"):
        landmarks_from_hypotheses([(LANDMARK_CLASS_IDS[0], float("nan"), 1.0), *hyps[1:]])


@pytest.mark.parametrize("track_id", ["7", "track-42", "3f2a9c1e-uuid", " 5 "])
def test_track_ids_pass_through_the_id_field_unchanged(track_id):
    assert track_id_from_field(track_id_to_field(track_id)) == track_id
    assert landmarks_from_legacy_id(track_id) is None


def test_untracked_faces_have_an_empty_id():
    assert track_id_to_field(None) == ""
    assert track_id_from_field("") is None and track_id_from_field("  ") is None


def test_old_style_landmark_ids_still_give_landmarks_and_no_track_id():
    old = '{"landmarks":[[1.0,2.0],[3.0,4.0],[5.0,6.0],[7.0,8.0],[9.0,10.3]]}'
    np.testing.assert_allclose(landmarks_from_legacy_id(old), LANDMARKS, atol=0.05)
    assert track_id_from_field(old) is None


def test_malformed_old_style_landmarks_are_refused():
    with pytest.raises(DetectionFieldError):
        landmarks_from_legacy_id('{"landmarks":[[1,2],[3,4]]}')
    with pytest.raises(DetectionFieldError):
        landmarks_from_legacy_id('{"landmarks":[[1,2],')
