"""Training sets (ImageFolder tree, aligned ImageFolder, InsightFace RecordIO folder, or a dataset
object) as decoded BGR images with labels (``imageio``'s decode), the seeded batch order, and
augmentation; the network input is ``recognition/network_input.py``'s, as the Embedder's."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from face_perception.data import DatasetError
from face_perception.data.image_bytes import check_image_bytes, check_image_file
from face_perception.recognition.network_input import NetworkInput


class ImageFolderSet:
    """``root/<identity>/<image>``; images are face crops (aligned chips or loose crops), resized
    to the network input when their size differs."""

    kind = "imagefolder"

    def __init__(self, folder):
        from face_perception.data.imagefolder import ImageFolder, list_image_folder

        self.folder = folder if isinstance(folder, ImageFolder) else list_image_folder(folder)
        self.root = Path(self.folder.root)
        self.classes: List[str] = list(self.folder.identities)
        self.labels = np.array([label for _, label in self.folder.samples], np.int64)
        for path, _ in self.folder.samples:  # before the first step, not in the middle
            check_image_file(path)

    def notes(self) -> List[str]:
        """What listing left out (empty identity folders, files that are not images)."""
        if not self.folder.skipped and not self.folder.empty_identities:
            return []
        return [self.folder.report()]

    def __len__(self) -> int:
        return len(self.folder.samples)

    def read(self, i: int) -> Tuple[np.ndarray, int]:
        path, label = self.folder.samples[i]
        return read_image(path), int(label)


def read_image(path) -> np.ndarray:
    """A training or validation image file as BGR uint8 (``imageio``'s decode, as in use);
    DatasetError naming the file when it cannot be read."""
    from face_perception.imageio import ImageError, read_image_bgr

    try:
        return read_image_bgr(path)
    except ImageError as exc:
        raise DatasetError(str(exc)) from None


class RecordIOSet:
    """An InsightFace ``train.rec``/``train.idx``/``property`` folder. The file is opened once per
    process (data-loader workers must not share a file position)."""

    kind = "recordio"

    def __init__(self, folder):
        from face_perception.data.recordio import RecordIODataset

        self.root = Path(folder)
        labels = []
        with RecordIODataset(self.root) as ds:
            for i in range(len(ds)):  # every record checked before the first step
                label, data = ds.read(i)
                check_image_bytes(data, f"{ds.rec_path}: record {ds.keys[i]}")
                labels.append(label)
            count = ds.num_classes
        self.labels = np.array(labels, np.int64)
        if len(labels) and (self.labels.min() < 0):
            raise DatasetError(f"{self.root}: negative class label {int(self.labels.min())}")
        n = int(self.labels.max()) + 1 if len(labels) else 0
        if count is not None and n > count:
            raise DatasetError(f"{self.root}/property says {count} classes but a record has "
                               f"label {n - 1}")
        self.classes = [str(i) for i in range(count if count is not None else n)]
        self._ds, self._pid = None, None

    def notes(self) -> List[str]:
        return []

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> Tuple[np.ndarray, int]:
        from face_perception.data.recordio import RecordIODataset

        if self._pid != os.getpid():
            self._ds, self._pid = RecordIODataset(self.root), os.getpid()
        label = int(self.labels[i])
        return self._ds.image(i, color_order="bgr"), label

    def __getstate__(self):  # data-loader workers reopen the file themselves
        state = dict(self.__dict__)
        state["_ds"], state["_pid"] = None, None
        return state


class ObjectSet:
    """A dataset object: ``read(i)`` or ``ds[i]`` -> (H x W x 3 uint8 BGR image, label), with
    ``classes`` (names) or labels 0..C-1 (e.g. a VGGFace2-list dataset of face_perception.data)."""

    kind = "object"

    def __init__(self, obj):
        self.obj, self.root = obj, Path(str(getattr(obj, "root", type(obj).__name__)))
        n = len(obj)
        if hasattr(obj, "labels"):
            self.labels = np.asarray(obj.labels, np.int64)
        else:
            self.labels = np.array([int(self._item(i)[1]) for i in range(n)], np.int64)
        classes = getattr(obj, "classes", None) or getattr(obj, "identities", None)
        self.classes = list(classes) if classes else \
            [str(i) for i in range(int(self.labels.max()) + 1 if n else 0)]

    def notes(self) -> List[str]:
        return []

    def _item(self, i):
        return self.obj.read(i) if hasattr(self.obj, "read") else self.obj[i]

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> Tuple[np.ndarray, int]:
        image, label = self._item(i)
        if hasattr(image, "numpy"):  # a CHW tensor from a torch-style dataset is not BGR uint8
            raise DatasetError(f"{self.root}: item {i} is a tensor; training needs the raw "
                               "H x W x 3 uint8 BGR image (read(i) or ds[i])")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"{self.root}: item {i} has shape {image.shape}; training needs "
                               "an H x W x 3 uint8 BGR image")
        return image, int(label)


def open_training_set(source):
    """A training set from a path (RecordIO folder when it holds train.rec, else an ImageFolder
    tree), the seed's dataset object (``.path`` + ``.dataset_type``), an ImageFolder listing,
    or a dataset object. Refuses sets that cannot train a classifier (fewer than 2 identities)."""
    from face_perception.data.imagefolder import ImageFolder

    if hasattr(source, "path") and hasattr(source, "dataset_type"):  # the seed's ExternalDataset
        kind = str(source.dataset_type).lower()
        if kind not in ("imagefolder", "recordio", "insightface"):
            raise DatasetError(f"{source.path}: dataset_type {source.dataset_type!r} cannot be "
                               "trained on; use 'imagefolder' or 'recordio'")
        source = source.path
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not str(source):
            raise DatasetError("no training dataset given (dataset is empty)")
        if not path.exists():
            raise FileNotFoundError(f"training dataset not found: {path}")
        tset = RecordIOSet(path) if (path / "train.rec").is_file() else ImageFolderSet(path)
    elif isinstance(source, ImageFolder):
        tset = ImageFolderSet(source)
    elif hasattr(source, "__len__") and (hasattr(source, "read") or hasattr(source, "__getitem__")):
        tset = ObjectSet(source)
    else:
        raise DatasetError(f"cannot train on {type(source).__name__}: give a folder path, the "
                           "seed's dataset object or a dataset with read(i)")
    if len(tset) == 0:
        raise DatasetError(f"{tset.root}: the training set has no images")
    present = np.unique(tset.labels)
    if len(present) < 2:
        raise DatasetError(f"{tset.root}: training a classifier needs at least 2 identities, "
                           f"found {len(present)} ({', '.join(tset.classes[i] for i in present)})")
    return tset


# ----------------------------------------------------------------------------- batch order
class BatchOrder:
    """Which samples (flips, augmentation seeds) batch ``k`` uses: epoch ``e`` is a permutation
    seeded by (seed, e), split into global batches of ``batch_size x world``; rank ``r`` takes
    the r-th slice. A pure function of k, so resuming at k repeats the uninterrupted run, and
    two processes together see the same global batch as one process with the whole batch.

    Without ``drop_last`` an epoch's images are spread over ``ceil(n / global batch)`` batches
    of nearly equal size (never a last batch of one image, which batch norm cannot train on),
    and each batch over the processes likewise (never an empty slice)."""

    MIN_PER_PROCESS = 2  # batch norm needs two samples per channel in training

    def __init__(self, n: int, batch_size: int, world: int = 1, rank: int = 0, seed: int = 0,
                 drop_last: bool = True, flip: bool = True, where: str = "dataset"):
        self.n, self.batch, self.world, self.rank = n, batch_size, world, rank
        self.global_batch = batch_size * world
        self.seed, self.flip, self.drop_last = seed, flip, drop_last
        if drop_last:
            self.per_epoch = n // self.global_batch
            if self.per_epoch == 0:
                raise DatasetError(f"{where}: {n} images are fewer than one batch of "
                                   f"{self.global_batch} (batch_size x processes) with "
                                   "drop_last; lower batch_size or set drop_last false")
            smallest = batch_size
        else:
            self.per_epoch = -(-n // self.global_batch)
            smallest = (n // self.per_epoch) // world
        if smallest < self.MIN_PER_PROCESS:
            raise DatasetError(f"{where}: batches of {smallest} image(s) per process ({n} "
                               f"images, batch_size {batch_size}, {world} processes); batch "
                               f"norm needs at least {self.MIN_PER_PROCESS}")
        self._cache: dict = {}

    def _epoch(self, e: int):
        if e not in self._cache:
            import torch

            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            perm = torch.randperm(self.n, generator=g).numpy()
            flips = (torch.rand(self.n, generator=g) < 0.5).numpy() if self.flip \
                else np.zeros(self.n, bool)
            seeds = torch.randint(0, 2 ** 31 - 1, (self.n,), generator=g).numpy()
            self._cache = {e: (perm, flips, seeds)}
        return self._cache[e]

    def batch_at(self, k: int) -> List[Tuple[int, bool, int]]:
        """(sample index, flip, augmentation seed) of this process's share of batch k."""
        e, b = divmod(k, self.per_epoch)
        perm, flips, seeds = self._epoch(e)
        if self.drop_last:
            idx = perm[b * self.global_batch:(b + 1) * self.global_batch]
        else:
            idx = np.array_split(perm, self.per_epoch)[b]
        mine = np.array_split(idx, self.world)[self.rank]
        return [(int(i), bool(flips[i]), int(seeds[i])) for i in mine]


class BatchSampler:
    """Batches for iterations ``start .. stop-1``, ``accumulate`` batches per iteration (a
    torch ``batch_sampler``)."""

    def __init__(self, order: BatchOrder, start: int, stop: int, accumulate: int = 1):
        self.order, self.start, self.stop, self.accumulate = order, start, stop, accumulate

    def __len__(self) -> int:
        return (self.stop - self.start) * self.accumulate

    def __iter__(self):
        for k in range(self.start * self.accumulate, self.stop * self.accumulate):
            yield self.order.batch_at(k)


# ---------------------------------------------------------------------------- network input
def network_normalisation(rgb_mean: Sequence[float], rgb_std: Sequence[float],
                          color_order: str) -> Tuple[List[float], List[float]]:
    """Mean and std in 0..255 pixel units and in the network's channel order (ModelMeta's
    convention) from the seed's 0..1 R, G, B values."""
    mean = [255.0 * v for v in rgb_mean]
    std = [255.0 * v for v in rgb_std]
    if color_order == "bgr":
        mean, std = mean[::-1], std[::-1]
    return mean, std


# Training's name for the network input (BGR uint8 image -> 3 x H x W float32, resized to the
# input size if needed, optional flip): the very step the Embedder applies.
ChipTransform = NetworkInput


class Augmentation:
    """AdaFace's training augmentations, each applied with its probability: a random crop
    (a random part of the chip kept in place, the rest black), photometric jitter (brightness,
    contrast, saturation) and low resolution (down-scaled by up to 4x and back). They make the
    low-quality examples AdaFace's margin adapts to. Random draws come from a per-sample seed
    of the batch order, so a resumed run augments exactly as the uninterrupted one."""

    def __init__(self, crop: float = 0.0, photometric: float = 0.0, low_res: float = 0.0):
        self.crop, self.photometric, self.low_res = crop, photometric, low_res

    @property
    def enabled(self) -> bool:
        return bool(self.crop or self.photometric or self.low_res)

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        import cv2

        rng = np.random.default_rng(seed)
        h, w = image.shape[:2]
        if rng.random() < self.crop:
            scale, ratio = rng.uniform(0.2, 1.0), rng.uniform(3 / 4, 4 / 3)
            cw = int(round(min(w, w * np.sqrt(scale * ratio))))
            ch = int(round(min(h, h * np.sqrt(scale / ratio))))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            out = np.zeros_like(image)
            out[y0:y0 + ch, x0:x0 + cw] = image[y0:y0 + ch, x0:x0 + cw]
            image = out
        if rng.random() < self.low_res:
            f = rng.uniform(1.0, 4.0)
            small = cv2.resize(image, (max(1, int(w / f)), max(1, int(h / f))),
                               interpolation=cv2.INTER_AREA)
            up = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC)
            image = cv2.resize(small, (w, h), interpolation=up[int(rng.integers(0, 4))])
        if rng.random() < self.photometric:
            x = image.astype(np.float32) * rng.uniform(0.5, 1.5)          # brightness
            x = (x - x.mean()) * rng.uniform(0.5, 1.5) + x.mean()          # contrast
            grey = x.mean(axis=2, keepdims=True)
            x = (x - grey) * rng.uniform(0.0, 1.5) + grey                  # saturation
            image = np.clip(x, 0, 255).astype(np.uint8)
        return image


class TorchSet:
    """Map-style torch dataset over a training set: item (index, flip, seed) -> (input,
    label)."""

    def __init__(self, tset, transform: ChipTransform, augment: Augmentation = None):
        self.tset, self.transform = tset, transform
        self.augment = augment if augment is not None and augment.enabled else None

    def __len__(self) -> int:
        return len(self.tset)

    def __getitem__(self, item):
        import torch

        i, flip, seed = item
        image, label = self.tset.read(i)
        if self.augment is not None:
            image = self.augment(image, seed)
        return torch.from_numpy(self.transform(image, flip)), label
