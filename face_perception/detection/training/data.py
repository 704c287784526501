"""Detection training data: what a dataset argument may be (a WIDER root, a label.txt, a
``WiderFaceDataset`` or WiderSample list) turned into samples, written once for the learner and
the CLI; and the augmented training set keyed by (seed, epoch, index)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from face_perception.detection.augment import Annotations, TrainTransform
from face_perception.detection.wider import WiderFaceDataset, WiderSample
from face_perception.imageio import read_image_bgr


def open_samples(dataset, split: str = "train") -> list[WiderSample]:
    """Samples of a WiderFaceDataset, a sequence of WiderSample, a label.txt file or a WIDER
    root (its ``split``)."""
    if isinstance(dataset, (str, os.PathLike)):
        path = Path(dataset)
        if path.is_file():
            return list(WiderFaceDataset.from_label_file(path))
        if not path.exists():
            raise FileNotFoundError(f"data not found: {path}")
        return list(WiderFaceDataset(path, splits=[split]))
    if isinstance(dataset, WiderFaceDataset):
        return list(dataset.samples)
    samples = list(dataset)
    if not all(isinstance(s, WiderSample) for s in samples):
        raise TypeError("dataset must be a WiderFaceDataset, a sequence of WiderSample, a WIDER "
                        f"root folder or a label.txt path; got {type(dataset).__name__}")
    return samples


class TrainSet:
    """Training samples -> augmented (tensor, targets); randomness keyed by (seed, epoch, index).

    Keying every sample's augmentation by (seed, epoch, index) makes an epoch's batches the same
    whether training ran through or resumed from a checkpoint, and independent of worker count.
    """

    def __init__(self, samples: list[WiderSample], transform: TrainTransform, seed: int):
        self.samples = samples
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        import torch

        sample = self.samples[index]
        image = read_image_bgr(sample.image_path)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        ann = Annotations(sample.boxes.copy(), sample.landmarks.copy(),
                          sample.has_landmarks.copy())
        tensor, targets = self.transform(image, ann, rng)
        return torch.from_numpy(tensor), {k: torch.from_numpy(v) for k, v in targets.items()}


def collate(batch):
    import torch

    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def random_subset(samples: list[WiderSample], size: int, seed: int) -> list[WiderSample]:
    """``size`` samples drawn by ``seed`` (all when there are no more), in their order."""
    if len(samples) <= size:
        return samples
    pick = np.random.default_rng(seed).choice(len(samples), size, replace=False)
    return [samples[i] for i in sorted(pick)]
