"""InsightFace training sets in MXNet RecordIO: ``train.rec`` + ``train.idx`` + ``property``,
read (and written) without MXNet.

Record framing (dmlc-core recordio): little-endian uint32 magic 0xced7230a, uint32 whose top 3
bits are a continuation flag and low 29 bits the length, the payload, zero padding to 4 bytes.
A payload that itself contains the magic word at a 4-byte boundary is split there into parts
(flag 1 = first, 2 = middle, 3 = last) and the reader re-inserts the magic between them.
Payload = IRHeader ``<IfQQ`` (flag, label, id, id2); when flag > 0, ``flag`` float32 labels
follow the header. Then the encoded image. InsightFace's record 0 is a header with labels
(first identity record, end of identity records); images are records 1 .. label[0]-1.
``train.idx`` lines are ``key<TAB>byte offset``; ``property`` is ``num_classes,height,width``.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from face_perception.data.errors import DatasetError
from face_perception.files import atomic_path, atomic_write_text

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_IR_FORMAT = "<IfQQ"
_IR_SIZE = struct.calcsize(_IR_FORMAT)  # 24
_LEN_MASK = (1 << 29) - 1


@dataclass
class RecordHeader:
    """An IRHeader: ``label`` is a float, or an array when the record carries several."""

    flag: int
    label: Union[float, np.ndarray]
    id: int
    id2: int


def read_recordio_header(payload: bytes) -> Tuple[RecordHeader, bytes]:
    """Split a record payload into its IRHeader and the rest (usually an encoded image)."""
    if len(payload) < _IR_SIZE:
        raise DatasetError(f"record of {len(payload)} bytes is shorter than its 24-byte header")
    flag, label, id1, id2 = struct.unpack(_IR_FORMAT, payload[:_IR_SIZE])
    rest = payload[_IR_SIZE:]
    if flag > 0:
        if len(rest) < 4 * flag:
            raise DatasetError(f"record header announces {flag} labels but has "
                               f"{len(rest)} bytes left")
        labels = np.frombuffer(rest[:4 * flag], dtype="<f4").astype(np.float32)
        return RecordHeader(flag, labels, id1, id2), rest[4 * flag:]
    return RecordHeader(flag, float(label), id1, id2), rest


def pack_record(label: Union[float, Sequence[float]], data: bytes, id: int = 0,
                id2: int = 0) -> bytes:
    """IRHeader + labels + data, as ``mx.recordio.pack`` makes them."""
    if np.ndim(label) == 0:
        return struct.pack(_IR_FORMAT, 0, float(label), id, id2) + data
    labels = np.asarray(label, dtype="<f4").ravel()
    return struct.pack(_IR_FORMAT, len(labels), 0.0, id, id2) + labels.tobytes() + data


def read_record_at(f: BinaryIO, offset: int, where: str = "") -> bytes:
    """The payload of the record starting at ``offset`` (multi-part records joined)."""
    f.seek(offset)
    out = bytearray()
    while True:
        head = f.read(8)
        if len(head) < 8:
            raise DatasetError(f"{where}: record at byte {offset} is truncated (file ends)")
        magic, lrec = struct.unpack("<II", head)
        if magic != MAGIC:
            raise DatasetError(f"{where}: no RecordIO record at byte {f.tell() - 8} (magic "
                               f"{magic:#010x}, expected {MAGIC:#010x}); the .idx and .rec "
                               "files do not belong together or the file is damaged")
        cflag, length = lrec >> 29, lrec & _LEN_MASK
        padded = (length + 3) & ~3
        body = f.read(padded)
        if len(body) < padded:
            raise DatasetError(f"{where}: record at byte {offset} is truncated (needs {length} "
                               f"bytes)")
        out += body[:length]
        if cflag in (0, 3):
            return bytes(out)
        out += _MAGIC_BYTES


def write_record(f: BinaryIO, payload: bytes) -> int:
    """Append one record (split at embedded magic words, padded); returns its start offset."""
    start = f.tell()
    if len(payload) >= 1 << 29:
        raise DatasetError(f"RecordIO records are limited to 2^29 bytes, got {len(payload)}")
    view = memoryview(payload)
    part_start = 0
    for i in range(0, len(payload) - len(payload) % 4, 4):
        if view[i:i + 4] == _MAGIC_BYTES:
            flag = 1 if part_start == 0 else 2
            f.write(struct.pack("<II", MAGIC, (flag << 29) | (i - part_start)))
            f.write(view[part_start:i])
            part_start = i + 4
    flag = 3 if part_start else 0
    f.write(struct.pack("<II", MAGIC, (flag << 29) | (len(payload) - part_start)))
    f.write(view[part_start:])
    f.write(b"\0" * ((4 - len(payload) % 4) % 4))
    return start


def read_index(path: Path) -> Dict[int, int]:
    """``key<TAB>offset`` lines of a .idx file; errors name file:line."""
    index: Dict[int, int] = {}
    for lineno, line in enumerate(path.read_text(encoding="ascii", errors="replace")
                                  .splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not all(f.isdigit() for f in fields):
            raise DatasetError(f"{path}:{lineno}: expected 'key<TAB>offset', got {line!r}")
        index[int(fields[0])] = int(fields[1])
    if not index:
        raise DatasetError(f"{path}: the index is empty")
    return index


class RecordIODataset:
    """Random access to an InsightFace ``train.rec``/``train.idx``/``property`` folder.

    ``len(ds)`` images; ``ds.read(i)`` -> (label, encoded image bytes); ``ds.image(i)`` -> BGR
    array. ``num_classes`` and ``image_size`` (h, w) come from ``property`` when present.
    """

    def __init__(self, folder: Union[str, os.PathLike], name: str = "train"):
        folder = Path(folder)
        self.rec_path, self.idx_path = folder / f"{name}.rec", folder / f"{name}.idx"
        for p in (self.rec_path, self.idx_path):
            if not p.is_file():
                raise FileNotFoundError(f"RecordIO file not found: {p}")
        self.num_classes: Optional[int] = None
        self.image_size: Optional[Tuple[int, int]] = None
        prop = folder / "property"
        if prop.is_file():
            self.num_classes, self.image_size = _read_property(prop)
        self._offsets = read_index(self.idx_path)
        size = self.rec_path.stat().st_size
        bad = [k for k, off in self._offsets.items() if off >= size]
        if bad:
            raise DatasetError(f"{self.idx_path}: key {bad[0]} points at byte "
                               f"{self._offsets[bad[0]]}, beyond the end of {self.rec_path} "
                               f"({size} bytes): truncated .rec or wrong .idx")
        self._file = open(self.rec_path, "rb")
        first = min(self._offsets)
        header, _ = read_recordio_header(self._payload(first))
        if header.flag > 0 and first == 0:
            # InsightFace layout: record 0 says where the images end.
            end = int(header.label[0])
            self.keys: List[int] = list(range(1, end))
            missing = [k for k in self.keys if k not in self._offsets]
            if missing:
                raise DatasetError(f"{self.idx_path}: header record says images are keys 1.."
                                   f"{end - 1} but key {missing[0]} is not in the index")
        else:
            self.keys = sorted(self._offsets)

    def __len__(self) -> int:
        return len(self.keys)

    def close(self) -> None:
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _payload(self, key: int) -> bytes:
        return read_record_at(self._file, self._offsets[key], str(self.rec_path))

    def read(self, i: int) -> Tuple[int, bytes]:
        """(class label, encoded image) of image ``i`` (0-based)."""
        key = self.keys[i]
        header, data = read_recordio_header(self._payload(key))
        label = header.label if np.ndim(header.label) == 0 else header.label[0]
        return int(label), data

    def image(self, i: int, color_order: str = "bgr") -> np.ndarray:
        from face_perception.imageio import ImageError, decode_image

        label, data = self.read(i)
        try:
            return decode_image(data, color_order=color_order)
        except ImageError:
            raise DatasetError(f"{self.rec_path}: image {i} (key {self.keys[i]}) cannot be "
                               "decoded") from None


def _read_property(path: Path) -> Tuple[int, Tuple[int, int]]:
    text = path.read_text(encoding="ascii", errors="replace").strip()
    fields = [f.strip() for f in text.split(",")]
    if len(fields) != 3 or not all(f.isdigit() for f in fields):
        raise DatasetError(f"{path}: expected 'num_classes,height,width', got {text!r}")
    return int(fields[0]), (int(fields[1]), int(fields[2]))


def write_recordio_dataset(folder: Union[str, os.PathLike], images: Sequence[bytes],
                           labels: Sequence[int], image_size: Tuple[int, int] = (112, 112),
                           name: str = "train") -> Path:
    """Write encoded images with class labels in InsightFace's layout (header record 0, images
    1..N, one record per identity with its image range), plus .idx and property."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    labels = [int(v) for v in labels]
    if len(images) != len(labels) or not images:
        raise DatasetError(f"need one label per image, got {len(images)} images and "
                           f"{len(labels)} labels")
    if labels != sorted(labels):
        raise DatasetError("images must be grouped by label (labels sorted)")
    classes = sorted(set(labels))
    n = len(images)
    offsets: Dict[int, int] = {}
    with atomic_path(folder / f"{name}.rec") as tmp, open(tmp, "wb") as f:
        # record 0: labels (first identity key, one past the last identity key)
        offsets[0] = write_record(f, pack_record([n + 1, n + 1 + len(classes)], b""))
        for key, (img, label) in enumerate(zip(images, labels), start=1):
            offsets[key] = write_record(f, pack_record(float(label), bytes(img), id=key))
        for j, c in enumerate(classes):
            first = labels.index(c) + 1
            last = first + labels.count(c)
            offsets[n + 1 + j] = write_record(f, pack_record([first, last], b"", id=n + 1 + j))
    atomic_write_text(folder / f"{name}.idx",
                      "".join(f"{k}\t{v}\n" for k, v in offsets.items()))
    atomic_write_text(folder / "property", f"{len(classes)},{image_size[0]},{image_size[1]}\n")
    return folder / f"{name}.rec"
