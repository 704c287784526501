"""MATLAB 5.0 reader for WIDER FACE's split and ground-truth files.

The files are written here by a small writer that follows the MAT-file format (tags, 8-byte
padding, small data elements for short names, zlib-compressed elements, column-major data), as
MATLAB and scipy write them. (The reader was also checked on the toolkit's real
wider_{easy,medium,hard}_val.mat and wider_face_val.mat: 3226 images, 39708 faces,
7211/13319/31958 easy/medium/hard faces.)
"""
import struct
import zlib

import numpy as np
import pytest

from face_perception.detection.matfile import MatFileError, load_mat
from face_perception.detection.wider import WiderFaceDataset, read_difficulty_list


def _element(mtype: int, payload: bytes) -> bytes:
    if len(payload) <= 4 and mtype != 14:  # small data element, as MATLAB writes short names
        return struct.pack("<HH", mtype, len(payload)) + payload.ljust(4, b"\0")
    return struct.pack("<II", mtype, len(payload)) + payload + b"\0" * (-len(payload) % 8)


def _matrix(name: str, value) -> bytes:
    if isinstance(value, str):
        cls, dims = 4, (1, len(value))
        data = _element(4, np.array([ord(c) for c in value], "<u2").tobytes())
    elif isinstance(value, np.ndarray) and value.dtype == object:
        cls, dims = 1, value.shape
        data = b"".join(_matrix("", v) for v in value.ravel(order="F"))
    else:
        value = np.asarray(value, dtype="<f8")
        cls, dims = 6, value.shape
        data = _element(9, value.ravel(order="F").tobytes())
    body = (_element(6, struct.pack("<II", cls, 0)) + _element(5, np.array(dims, "<i4").tobytes())
            + _element(1, name.encode()) + data)
    return struct.pack("<II", 14, len(body)) + body


def mat_bytes(variables: dict, compress: bool = True) -> bytes:
    header = b"MATLAB 5.0 MAT-file, written by the test".ljust(116, b" ")
    out = header + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"
    for name, value in variables.items():
        m = _matrix(name, value)
        out += struct.pack("<II", 15, len(zlib.compress(m))) + zlib.compress(m) if compress else m
    return out


def cells(*items) -> np.ndarray:
    arr = np.empty((len(items), 1), dtype=object)
    for i, item in enumerate(items):
        arr[i, 0] = item
    return arr


@pytest.mark.parametrize("compress", [True, False])
def test_numbers_strings_and_nested_cells_read_back(tmp_path, compress):
    grid = np.arange(6, dtype=float).reshape(2, 3)
    path = tmp_path / "v.mat"
    path.write_bytes(mat_bytes({"grid": grid, "title": "0--Parade",
                                "nested": cells(cells("a_1", "b_22"), np.array([[1.0], [3.0]])),
                                "e": np.zeros((0, 0))}, compress))
    m = load_mat(path)
    np.testing.assert_array_equal(m["grid"], grid)  # column-major data, original shape
    assert m["title"] == "0--Parade"
    assert m["nested"].shape == (2, 1)
    assert [str(s) for s in m["nested"][0, 0].ravel()] == ["a_1", "b_22"]
    np.testing.assert_array_equal(m["nested"][1, 0], [[1.0], [3.0]])
    assert m["e"].size == 0


def _wider_mats():
    events = cells("0--Parade", "1--Handshaking")
    files = cells(cells("0_Parade_1", "0_Parade_2"), cells("1_Hand_1"))
    boxes = cells(cells(np.array([[10, 10, 20, 20], [50, 50, 8, 8]], float),
                        np.array([[5, 5, 30, 30]], float)),
                  cells(np.array([[1, 2, 3, 4], [7, 7, 40, 40], [0, 0, 0, 0]], float)))
    invalid = cells(cells(np.array([[0], [1]], float), np.array([[0]], float)),
                    cells(np.array([[0], [0], [0]], float)))
    gt = {"event_list": events, "file_list": files, "face_bbx_list": boxes,
          "invalid_label_list": invalid}
    easy = {"event_list": events, "file_list": files,
            "gt_list": cells(cells(np.array([[1.0]]), np.zeros((0, 1))),
                             cells(np.array([[2.0]])))}
    return gt, easy


def test_official_mat_ground_truth_and_easy_split_make_a_dataset(tmp_path):
    gt, easy = _wider_mats()
    split = tmp_path / "wider_face_split"
    split.mkdir()
    (split / "wider_face_val.mat").write_bytes(mat_bytes(gt))
    (split / "wider_easy_val.mat").write_bytes(mat_bytes(easy, compress=False))
    ds = WiderFaceDataset(tmp_path, splits=["val"])
    assert [s.name for s in ds] == ["0--Parade/0_Parade_1.jpg", "0--Parade/0_Parade_2.jpg",
                                    "1--Handshaking/1_Hand_1.jpg"]
    assert ds[0].image_path == tmp_path / "WIDER_val/images/0--Parade/0_Parade_1.jpg"
    np.testing.assert_array_equal(ds[0].boxes, [[10, 10, 30, 30], [50, 50, 58, 58]])
    assert ds[0].ignore.tolist() == [False, True]           # invalid flag
    assert ds[2].ignore.tolist() == [False, False, True]    # zero-size box
    assert ds.difficulties == ["easy"]
    assert ds[0].subsets["easy"].tolist() == [True, False]
    assert ds[1].subsets["easy"].tolist() == [False]
    assert ds[2].subsets["easy"].tolist() == [False, True, False]
    lists = read_difficulty_list(split / "wider_easy_val.mat")
    assert lists["1--Handshaking/1_Hand_1.jpg"].tolist() == [2]


def test_unreadable_mat_files_are_refused_with_the_reason(tmp_path):
    hdf5 = tmp_path / "v73.mat"
    hdf5.write_bytes(b"MATLAB 7.3 MAT-file".ljust(512, b" "))
    with pytest.raises(MatFileError, match="v73.mat: MATLAB 7.3"):
        load_mat(hdf5)
    truncated = tmp_path / "cut.mat"
    truncated.write_bytes(mat_bytes({"grid": np.ones((4, 4))}, compress=False)[:-40])
    with pytest.raises(MatFileError, match="cut.mat: element at byte 128"):
        load_mat(truncated)
    struct_file = tmp_path / "struct.mat"
    data = bytearray(mat_bytes({"grid": np.ones(2)}, compress=False))
    data[128 + 16] = 2  # array class byte -> struct
    struct_file.write_bytes(bytes(data))
    with pytest.raises(MatFileError, match="structs"):
        load_mat(struct_file)
    with pytest.raises(MatFileError, match="not a MATLAB 5.0"):
        (tmp_path / "x.mat").write_bytes(b"\0" * 200)
        load_mat(tmp_path / "x.mat")
