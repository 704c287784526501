"""Training sets (ImageFolder tree, aligned ImageFolder, InsightFace RecordIO folder, or a dataset
object) as decoded BGR images with labels, the seeded batch order, and the network input."""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

from face_perception.data import DatasetError

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG", b"IEND"


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
        for path, _ in self.folder.samples:
            _check_complete(path)

    def __len__(self) -> int:
        return len(self.folder.samples)

    def read(self, i: int) -> Tuple[np.ndarray, int]:
        import cv2

        path, label = self.folder.samples[i]
        data = np.fromfile(path, dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        if image is None:
            raise DatasetError(f"{path}: cannot be decoded as an image")
        return image, int(label)


class RecordIOSet:
    """An InsightFace ``train.rec``/``train.idx``/``property`` folder. The file is opened once per
    process (data-loader workers must not share a file position)."""

    kind = "recordio"

    def __init__(self, folder):
        from face_perception.data.recordio import RecordIODataset

        self.root = Path(folder)
        with RecordIODataset(self.root) as ds:
            labels = [ds.read(i)[0] for i in range(len(ds))]
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

    def _item(self, i):
        return self.obj.read(i) if hasattr(self.obj, "read") else self.obj[i]

    def __len__(self) -> int:
        return len(self.labels)

    def read(self, i: int) -> Tuple[np.ndarray, int]:
        image, label = self._item(i)
        if hasattr(image, "numpy"):  # a CHW tensor from a torch-style dataset is not BGR uint8
            raise DatasetError(f"{self.root}: item {i} is a tensor; training needs the raw "
                               "H x W x 3 uint8 BGR image (read(i) or ds[i])")
        return np.asarray(image), int(label)


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


def _check_complete(path: Path) -> None:
    """Refuse empty files and JPEG/PNG files cut short (OpenCV decodes a truncated JPEG
    silently into a grey-padded image, which would train on garbage)."""
    size = path.stat().st_size
    if size == 0:
        raise DatasetError(f"{path}: empty image file")
    with open(path, "rb") as fh:
        head = fh.read(8)
        fh.seek(max(0, size - 64))
        tail = fh.read()
    if head.startswith(JPEG_START) and JPEG_END not in tail:
        raise DatasetError(f"{path}: truncated JPEG (no end-of-image marker)")
    if head.startswith(PNG_START) and PNG_END not in tail:
        raise DatasetError(f"{path}: truncated PNG (no IEND chunk)")


# ---------------------------------------------------------------------------- batch order
class BatchOrder:
    """Which samples (and flips) iteration ``k`` uses: epoch ``e`` is a permutation seeded by
    (seed, e), split into global batches of ``batch_size x world``; rank ``r`` takes the r-th
    contiguous slice. A pure function of k, so resuming at k repeats the uninterrupted run, and
    two processes together see the same global batch as one process with the whole batch."""

    def __init__(self, n: int, batch_size: int, world: int = 1, rank: int = 0, seed: int = 0,
                 drop_last: bool = True, flip: bool = True, where: str = "dataset"):
        self.n, self.batch, self.world, self.rank = n, batch_size, world, rank
        self.global_batch = batch_size * world
        self.seed, self.flip = seed, flip
        if drop_last:
            self.per_epoch = n // self.global_batch
            if self.per_epoch == 0:
                raise DatasetError(f"{where}: {n} images are fewer than one batch of "
                                   f"{self.global_batch} (batch_size x processes) with "
                                   "drop_last; lower batch_size or set drop_last false")
        else:
            self.per_epoch = -(-n // self.global_batch)
        self._cache: dict = {}

    def _epoch(self, e: int):
        if e not in self._cache:
            import torch

            g = torch.Generator().manual_seed(self.seed * 1_000_003 + e)
            perm = torch.randperm(self.n, generator=g).numpy()
            flips = (torch.rand(self.n, generator=g) < 0.5).numpy() if self.flip \
                else np.zeros(self.n, bool)
            self._cache = {e: (perm, flips)}
        return self._cache[e]

    def batch_at(self, k: int) -> List[Tuple[int, bool]]:
        e, b = divmod(k, self.per_epoch)
        perm, flips = self._epoch(e)
        idx = perm[b * self.global_batch:(b + 1) * self.global_batch]
        share = -(-len(idx) // self.world)
        mine = idx[self.rank * share:(self.rank + 1) * share]
        return [(int(i), bool(flips[i])) for i in mine]


class BatchSampler:
    """Batches for iterations ``start .. stop-1`` (a torch ``batch_sampler``)."""

    def __init__(self, order: BatchOrder, start: int, stop: int):
        self.order, self.start, self.stop = order, start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __iter__(self):
        for k in range(self.start, self.stop):
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


class ChipTransform:
    """BGR uint8 image -> (3, H, W) float32 network input: resize to the input size if needed,
    optional flip, channel order and (pixel - mean) / std exactly as the Embedder does."""

    def __init__(self, input_size, mean, std, color_order: str):
        self.size = (int(input_size[0]), int(input_size[1]))
        self.mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
        self.inv_std = (1.0 / np.asarray(std, np.float32)).reshape(3, 1, 1)
        self.color_order = color_order

    def __call__(self, image: np.ndarray, flip: bool = False) -> np.ndarray:
        import cv2

        if image.ndim != 3 or image.shape[2] != 3:
            raise DatasetError(f"expected an H x W x 3 image, got shape {image.shape}")
        if (image.shape[1], image.shape[0]) != self.size:
            shrink = image.shape[1] > self.size[0]
            image = cv2.resize(image, self.size,
                               interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        if flip:
            image = image[:, ::-1]
        if self.color_order == "rgb":
            image = image[:, :, ::-1]
        x = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
        x -= self.mean
        x *= self.inv_std
        return x


class TorchSet:
    """Map-style torch dataset over a training set: item (index, flip) -> (input, label)."""

    def __init__(self, tset, transform: ChipTransform):
        self.tset, self.transform = tset, transform

    def __len__(self) -> int:
        return len(self.tset)

    def __getitem__(self, item):
        import torch

        i, flip = item
        image, label = self.tset.read(i)
        return torch.from_numpy(self.transform(image, flip)), label
