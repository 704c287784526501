"""RecordIO (.rec/.idx/property) reader and writer, without MXNet."""
from __future__ import annotations

import io
import struct

import cv2
import numpy as np
import pytest

from face_perception.data import DatasetError
from face_perception.data.recordio import (
    MAGIC,
    RecordIODataset,
    pack_record,
    read_record_at,
    read_recordio_header,
    write_record,
    write_recordio_dataset,
)


@pytest.fixture(scope="module")
def faces(photos):
    out = []
    for name in ["obama.jpg", "obama2.jpg", "biden.jpg"]:
        img = cv2.resize(cv2.imread(str(photos / name)), (112, 112))
        out.append(cv2.imencode(".jpg", img)[1].tobytes())
    return out


def test_recordio_round_trip_in_insightface_layout(tmp_path, faces):
    write_recordio_dataset(tmp_path, faces, [0, 0, 1])
    assert (tmp_path / "property").read_text() == "2,112,112\n"
    with RecordIODataset(tmp_path) as ds:
        assert len(ds) == 3 and ds.num_classes == 2 and ds.image_size == (112, 112)
        assert ds.keys == [1, 2, 3]
        assert [ds.read(i) for i in range(3)] == [(0, faces[0]), (0, faces[1]), (1, faces[2])]
        img = ds.image(2)
        assert img.shape == (112, 112, 3) and img.dtype == np.uint8
        np.testing.assert_array_equal(ds.image(2, "rgb"), img[:, :, ::-1])


def test_recordio_header_with_several_labels():
    payload = pack_record([3.0, 7.0], b"abc", id=5)
    header, rest = read_recordio_header(payload)
    assert header.flag == 2 and header.label.tolist() == [3.0, 7.0] and header.id == 5
    assert rest == b"abc"
    header, rest = read_recordio_header(pack_record(4.0, b"xy"))
    assert header.flag == 0 and header.label == 4.0 and rest == b"xy"


@pytest.mark.parametrize("payload", [
    b"",
    b"abc",
    struct.pack("<I", MAGIC) + b"tail",                      # magic at the very start
    b"head" + struct.pack("<I", MAGIC) + b"tail1",           # in the middle, odd length after
    b"ab" + struct.pack("<I", MAGIC) + b"cd",                # unaligned: not split
    struct.pack("<II", MAGIC, MAGIC) + b"x" * 7 + struct.pack("<I", MAGIC),
])
def test_recordio_records_survive_embedded_magic_words(payload):
    f = io.BytesIO()
    first = write_record(f, payload)
    second = write_record(f, b"next")
    assert f.tell() % 4 == 0
    assert read_record_at(f, first) == payload
    assert read_record_at(f, second) == b"next"


def test_recordio_split_record_uses_continuation_flags():
    f = io.BytesIO()
    write_record(f, b"head" + struct.pack("<I", MAGIC) + b"tail")
    data = f.getvalue()
    _, l1 = struct.unpack("<II", data[:8])
    assert l1 >> 29 == 1 and l1 & 0x1FFFFFFF == 4  # first part: "head"
    _, l2 = struct.unpack("<II", data[12:20])
    assert l2 >> 29 == 3 and l2 & 0x1FFFFFFF == 4  # last part: "tail"


def test_recordio_refuses_mismatched_or_damaged_files(tmp_path, faces):
    write_recordio_dataset(tmp_path, faces, [0, 0, 1])
    idx = tmp_path / "train.idx"
    good_idx = idx.read_text()
    lines = good_idx.splitlines()
    key, off = lines[2].split("\t")
    idx.write_text("\n".join(lines[:2] + [f"{key}\t{int(off) + 4}"] + lines[3:]) + "\n")
    with RecordIODataset(tmp_path) as ds, pytest.raises(DatasetError, match="no RecordIO record"):
        ds.read(1)
    idx.write_text(good_idx.replace("\t", " ", 1).replace("1\t", "1\tx", 1))
    with pytest.raises(DatasetError, match=r"train.idx:2: expected 'key<TAB>offset'"):
        RecordIODataset(tmp_path)
    idx.write_text(good_idx)
    rec = tmp_path / "train.rec"
    rec.write_bytes(rec.read_bytes()[:200])
    with pytest.raises(DatasetError, match="beyond the end"):
        RecordIODataset(tmp_path)
    (tmp_path / "property").write_text("two,112,112")
    with pytest.raises(DatasetError, match="num_classes,height,width"):
        RecordIODataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="val.rec"):
        RecordIODataset(tmp_path, name="val")
