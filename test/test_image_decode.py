"""Images are decoded in one place (imageio.decode_image): inference, training and validation
during training read a file into the same BGR pixels, and bad bytes are named."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from face_perception.data import DatasetError
from face_perception.imageio import ImageError, decode_image, read_image_bgr
from face_perception.recognition.training.data import ImageFolderSet, read_image
from face_perception.recognition.training.validation import ValidationSet


@pytest.fixture
def folder(photos, tmp_path):
    for person, files in (("obama", ("obama.jpg", "obama2.jpg")),
                          ("biden", ("biden.jpg", "biden.jpg"))):
        (tmp_path / "set" / person).mkdir(parents=True)
        for i, f in enumerate(files):
            shutil.copy(photos / f, tmp_path / "set" / person / f"{i}.jpg")
    return tmp_path / "set"


def test_inference_training_and_validation_decode_a_photo_alike(folder):
    train = ImageFolderSet(folder)
    val = ValidationSet(folder, num_pairs=4)
    for i, (path, _) in enumerate(train.folder.samples):
        want = read_image_bgr(path)
        np.testing.assert_array_equal(train.read(i)[0], want)
        np.testing.assert_array_equal(decode_image(path.read_bytes(), str(path)), want)
        if str(path) in val.images:
            np.testing.assert_array_equal(val.images[str(path)], want)
    assert val.images


def test_decode_gives_rgb_on_request(photos):
    data = (photos / "biden.jpg").read_bytes()
    np.testing.assert_array_equal(decode_image(data, color_order="rgb"),
                                  decode_image(data)[:, :, ::-1])


def test_grey_and_16_bit_images_become_bgr_uint8():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    out = decode_image(cv2.imencode(".png", grey)[1].tobytes())
    assert out.shape == (8, 8, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 1], grey)
    deep = np.full((4, 4, 3), 65535, np.uint16)
    assert decode_image(cv2.imencode(".png", deep)[1].tobytes()).max() == 255


def test_undecodable_bytes_are_named(tmp_path):
    with pytest.raises(ImageError, match="train.rec: record 3"):
        decode_image(b"\xff\xd8 not a jpeg", "train.rec: record 3")
    with pytest.raises(ImageError, match="empty: x.jpg"):
        decode_image(b"", "x.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8 not a jpeg \xff\xd9")
    with pytest.raises(DatasetError, match=str(bad)):
        read_image(bad)
