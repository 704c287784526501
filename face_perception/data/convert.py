"""Lossless conversions between dataset layouts: ImageFolder <-> InsightFace RecordIO, and a
verification ``.bin`` <-> an image folder with an LFW-style ``pairs.txt``.

Images are copied as their encoded bytes, never re-encoded, so a round trip gives identical
files. RecordIO has no names, so ImageFolder -> RecordIO also writes MXNet im2rec's list file
``train.lst`` (``key<TAB>label<TAB>relative path``), which RecordIO -> ImageFolder uses to
restore folder and file names (InsightFace's loaders ignore it). Output folders are built
under a temporary name and renamed when complete; an existing destination is never touched.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, List, Sequence, Union

from face_perception.data.errors import DatasetError
from face_perception.data.image_bytes import SIGNATURES, image_suffix

PathLike = Union[str, os.PathLike]
LIST_FILE = "train.lst"
PAIRS_FILE = "pairs.txt"


def check_encoded_image(data: bytes, where: str) -> None:
    """Refuse bytes that are not a complete image: undecodable, or a JPEG/PNG cut short
    (OpenCV decodes a truncated JPEG with grey rows instead of failing)."""
    import cv2
    import numpy as np

    if not data:
        raise DatasetError(f"{where}: empty image")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise DatasetError(f"{where}: truncated JPEG (no end-of-image marker)")
    if data[:4] == b"\x89PNG" and b"IEND" not in data[-16:]:
        raise DatasetError(f"{where}: truncated PNG (no IEND chunk)")
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8) is None:
        raise DatasetError(f"{where}: cannot be decoded as an image")


@contextlib.contextmanager
def new_folder(dest: PathLike) -> Iterator[Path]:
    """A temporary folder beside ``dest``, renamed to ``dest`` on success, removed on error."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"destination exists and is not an empty folder: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        yield tmp
        # mkdtemp makes the folder owner-only; the result gets ordinary permissions
        os.chmod(tmp, 0o777 & ~_umask())
        if dest.is_dir():
            dest.rmdir()
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    from face_perception.files import _default_mode

    return 0o666 & ~_default_mode()


class _FileBytes(Sequence):
    """The bytes of each file, read (and checked) when the RecordIO writer asks for them."""

    def __init__(self, paths: List[Path]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        data = self.paths[i].read_bytes()
        check_encoded_image(data, str(self.paths[i]))
        return data


# ---------------------------------------------------------------------------- RecordIO
def imagefolder_to_recordio(src: PathLike, dest: PathLike) -> dict:
    """Write ``src`` (root/<identity>/<images>) as ``dest/train.rec|.idx|property|.lst``."""
    import cv2
    import numpy as np

    from face_perception.data.imagefolder import list_image_folder
    from face_perception.data.recordio import write_recordio_dataset

    folder = list_image_folder(src)
    paths = [p for p, _ in folder.samples]
    labels = [label for _, label in folder.samples]
    first = _FileBytes(paths)[0]
    h, w = cv2.imdecode(np.frombuffer(first, np.uint8), cv2.IMREAD_COLOR).shape[:2]
    with new_folder(dest) as tmp:
        write_recordio_dataset(tmp, _FileBytes(paths), labels, image_size=(h, w))
        lines = [f"{key}\t{label}\t{p.relative_to(folder.root).as_posix()}"
                 for key, (p, label) in enumerate(folder.samples, start=1)]
        (tmp / LIST_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {"images": len(paths), "identities": len(folder.identities),
            "skipped": [str(p) for p, _ in folder.skipped], "dest": str(dest)}


def _read_list_file(path: Path) -> dict:
    """{record key: relative path} of a train.lst; paths must stay inside the destination."""
    out = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 3 or not fields[0].isdigit():
            raise DatasetError(f"{path}:{lineno}: expected 'key<TAB>label<TAB>path', got "
                               f"{line!r}")
        rel = Path(fields[2])
        if rel.is_absolute() or ".." in rel.parts or len(rel.parts) < 2:
            raise DatasetError(f"{path}:{lineno}: path must be <identity>/<file> inside the "
                               f"folder, got {fields[2]!r}")
        out[int(fields[0])] = rel
    return out


def recordio_to_imagefolder(src: PathLike, dest: PathLike) -> dict:
    """Write every image of the RecordIO folder ``src`` into ``dest/<identity>/<file>``: the
    names of ``src/train.lst`` when present, else ``<label>/<key>.<ext>``."""
    from face_perception.data.recordio import RecordIODataset

    src = Path(src)
    names = _read_list_file(src / LIST_FILE) if (src / LIST_FILE).is_file() else {}
    with RecordIODataset(src) as ds, new_folder(dest) as tmp:
        labels = set()
        # Folder names sort as text when read back: zero-padded labels keep their order, so
        # ImageFolder -> RecordIO gives every image its label again.
        top = ds.num_classes - 1 if ds.num_classes else \
            max(int(ds.read(i)[0]) for i in range(len(ds)))
        width = len(str(max(top, 0)))
        for i in range(len(ds)):
            label, data = ds.read(i)
            key = ds.keys[i]
            check_encoded_image(data, f"{ds.rec_path}: record {key}")
            rel = names.get(key) or Path(f"{int(label):0{width}d}") / \
                f"{key:08d}{image_suffix(data)}"
            (tmp / rel.parent).mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
            labels.add(label)
        count = len(ds)
    return {"images": count, "identities": len(labels), "names_from": LIST_FILE if names
            else "labels", "dest": str(dest)}


# ---------------------------------------------------------------------------- .bin <-> pairs
def bin_to_pairs(src: PathLike, dest: PathLike) -> dict:
    """Write a verification ``.bin`` as ``dest/<name>/<name>_000n.<ext>`` images and
    ``dest/pairs.txt`` (LFW format, same order): pair i is ``pair<i>`` images 1 and 2 when
    same, else ``pair<i>a`` 1 and ``pair<i>b`` 1."""
    from face_perception.data.pairs import write_lfw_pairs
    from face_perception.data.verification_bin import read_verification_bin

    vbin = read_verification_bin(src)
    lines = []
    with new_folder(dest) as tmp:
        for i, same in enumerate(vbin.issame):
            first, second = vbin.images[2 * i], vbin.images[2 * i + 1]
            if same:
                name = f"pair{i:05d}"
                files = [(name, 1, first), (name, 2, second)]
                lines.append((name, 1, 2))
            else:
                files = [(f"pair{i:05d}a", 1, first), (f"pair{i:05d}b", 1, second)]
                lines.append((files[0][0], 1, files[1][0], 1))
            for name, n, data in files:
                (tmp / name).mkdir(exist_ok=True)
                (tmp / name / f"{name}_{n:04d}{image_suffix(data)}").write_bytes(data)
        write_lfw_pairs(tmp / PAIRS_FILE, lines)
    return {"pairs": len(vbin), "images": len(vbin.images), "dest": str(dest)}


def pairs_to_bin(src: PathLike, dest: PathLike, images_root: PathLike = None) -> dict:
    """Pack an LFW-style pair list (a ``pairs.txt`` file, or a folder holding one) and its
    images (default: ``pairs.default_images_root``) into a verification ``.bin``, image bytes
    unchanged."""
    from face_perception.data.pairs import default_images_root, read_lfw_pairs
    from face_perception.data.verification_bin import write_verification_bin

    src = Path(src)
    pairs_file = src / PAIRS_FILE if src.is_dir() else src
    root = Path(images_root) if images_root is not None else default_images_root(pairs_file)
    pairs = read_lfw_pairs(pairs_file, root, check_exists=False)
    images = []
    for k, pair in enumerate(pairs):
        for path in (pair.first, pair.second):
            found = _with_any_suffix(path)
            if found is None:
                raise DatasetError(f"{pairs_file}: pair {k + 1}: image not found: {path} "
                                   "(any image suffix)")
            data = found.read_bytes()
            check_encoded_image(data, str(found))
            images.append(data)
    write_verification_bin(dest, images, [p.issame for p in pairs])
    return {"pairs": len(pairs), "images": len(images), "dest": str(dest)}


def _with_any_suffix(path: Path):
    if path.is_file():
        return path
    for suffix in dict.fromkeys(s for _, s in SIGNATURES):
        if path.with_suffix(suffix).is_file():
            return path.with_suffix(suffix)
    return None
