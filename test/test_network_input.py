"""Chip -> network input is one step (recognition/network_input.py): the Embedder, training and
the aligned-face dataset give a network the very same numbers for the same chip."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from face_perception.detection import Detector
from face_perception.imageio import read_image_bgr
from face_perception.recognition import Embedder
from face_perception.recognition.network_input import NetworkInput
from face_perception.recognition.training.aligned_dataset import ChipToTensor
from face_perception.recognition.training.data import ChipTransform, network_normalisation


@pytest.fixture(scope="module")
def chip_and_meta(photos):
    embedder = Embedder("dlib_resnet", backend="onnx")
    image = read_image_bgr(photos / "obama.jpg")
    face = Detector().detect(image)[0]
    return embedder, embedder.align(image, face.landmarks)


def test_embedder_training_and_dataset_give_the_network_identical_input(chip_and_meta):
    embedder, chip = chip_and_meta
    meta = embedder.meta
    from_embedder = embedder.preprocess(chip[None])[0]
    from_training = ChipTransform(meta.input_size, meta.mean, meta.std, meta.color_order)(chip)
    from_dataset = ChipToTensor(meta)(chip).numpy()
    np.testing.assert_array_equal(from_training, from_embedder)
    np.testing.assert_array_equal(from_dataset, from_embedder)
    # What the model folder says: RGB, (pixel - mean) / std, channels first.
    want = (chip[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
            - np.float32(meta.mean).reshape(3, 1, 1)) / np.float32(meta.std).reshape(3, 1, 1)
    np.testing.assert_allclose(from_embedder, want, rtol=1e-6, atol=1e-6)


def test_bgr_network_gets_bgr_channels_with_normalisation_in_its_order(chip_and_meta):
    _, chip = chip_and_meta
    mean, std = network_normalisation([0.1, 0.5, 0.9], [0.2, 0.4, 0.8], "bgr")
    x = NetworkInput((150, 150), mean, std, "bgr")(chip)
    np.testing.assert_allclose(x[0], (chip[:, :, 0] - 0.9 * 255) / (0.8 * 255), rtol=1e-5)
    np.testing.assert_allclose(x[2], (chip[:, :, 2] - 0.1 * 255) / (0.2 * 255), rtol=1e-5)


def test_training_input_resizes_a_chip_of_another_size_then_mirrors_it(chip_and_meta):
    _, chip = chip_and_meta
    net_input = NetworkInput((112, 112), [127.5] * 3, [127.5] * 3, "rgb")
    small = cv2.resize(chip, (112, 112), interpolation=cv2.INTER_AREA)
    np.testing.assert_array_equal(net_input(chip), net_input(small))
    np.testing.assert_array_equal(net_input(chip, flip=True), net_input(small[:, ::-1]))
    batch = net_input(np.stack([chip, chip[:, ::-1]]))
    assert batch.shape == (2, 3, 112, 112)
    np.testing.assert_array_equal(batch[1], net_input(chip, flip=True))


def test_network_input_refuses_a_grey_chip_naming_its_shape():
    with pytest.raises(ValueError, match=r"got shape \(112, 112\)"):
        NetworkInput((112, 112), [127.5] * 3, [127.5] * 3, "rgb")(np.zeros((112, 112), np.uint8))
