"""A torch Dataset of faces aligned on the fly from their given landmarks (the toolkit's
VGGFace2 list), giving ``(image tensor, label)`` in a model's geometry and normalisation.

``ChipToTensor(meta)`` is the chip -> network-input step (colour order, mean, std from a
ModelMeta: ``recognition.network_input``, which ``Embedder.preprocess`` applies too); pass
``transform=`` to use your own (augmentation, for instance): it receives the aligned BGR uint8
chip.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch

from face_perception.data.vggface2 import FaceList, PathLike, read_vggface2_list


class ChipToTensor:
    """HxWx3 BGR uint8 chip -> 3xHxW float32 tensor ``(pixel - mean) / std`` in the model's
    channel order (``recognition.network_input``, as the Embedder feeds its network)."""

    def __init__(self, meta):
        from face_perception.recognition.network_input import NetworkInput

        self.input = NetworkInput.from_meta(meta)

    def __call__(self, chip_bgr: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.input(chip_bgr))


def default_meta():
    """The ArcFace 112x112 geometry (RGB, (pixel - 127.5) / 127.5) used when none is given."""
    from face_perception.recognition.model_meta import ModelMeta

    return ModelMeta.arcface_112(name="training", architecture="unknown")


class AlignedFaceDataset(torch.utils.data.Dataset):
    """``faces[i]`` -> (tensor, identity label): the image read, aligned from its 5 points
    into ``meta``'s template and input size, then ``transform`` (default ChipToTensor(meta)).

    ``num_classes``, ``identities`` and ``targets`` (all labels) describe the set without
    reading images. A missing or undecodable image raises ImageError naming the file.
    """

    def __init__(self, faces: FaceList, meta=None,
                 transform: Optional[Callable[[np.ndarray], object]] = None):
        self.faces = faces
        self.meta = meta if meta is not None else default_meta()
        self.transform = transform if transform is not None else ChipToTensor(self.meta)

    def __len__(self) -> int:
        return len(self.faces)

    @property
    def num_classes(self) -> int:
        return self.faces.num_classes

    @property
    def identities(self):
        return self.faces.identities

    @property
    def targets(self):
        return [label for _, label in self.faces.samples]

    def __getitem__(self, index: int):
        chip = self.faces.chip(index, self.meta)
        return self.transform(chip), self.faces.samples[index][1]


def load_vggface2_training_set(train_data_root: PathLike, train_list: PathLike,
                               train_landmarks: PathLike, meta=None,
                               transform=None) -> AlignedFaceDataset:
    """The toolkit's ``--train_data_root --train_list --train_landmarks`` as a Dataset."""
    return AlignedFaceDataset(read_vggface2_list(train_data_root, train_list, train_landmarks),
                              meta=meta, transform=transform)
