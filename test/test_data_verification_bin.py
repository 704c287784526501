"""Verification .bin files: real photos round trip; malicious or malformed pickles are refused."""
from __future__ import annotations

import os
import pickle
import struct

import cv2
import numpy as np
import pytest

from face_perception.data import DatasetError
from face_perception.data.verification_bin import (
    find_verification_bins,
    read_verification_bin,
    write_verification_bin,
)


@pytest.fixture(scope="module")
def crops(photos):
    """112x112 centre crops of the real photos, as JPEG bytes (what a .bin holds)."""
    out = []
    for name in ["obama.jpg", "obama2.jpg", "obama.jpg", "biden.jpg", "obama3.jpg", "biden.jpg"]:
        img = cv2.imread(str(photos / name))
        h, w = img.shape[:2]
        side = min(h, w)
        crop = img[(h - side) // 2:(h + side) // 2, (w - side) // 2:(w + side) // 2]
        ok, buf = cv2.imencode(".jpg", cv2.resize(crop, (112, 112)))
        assert ok
        out.append(buf.tobytes())
    return out


ISSAME = [True, False, True]


def test_verification_bin_round_trip_with_real_photos(tmp_path, crops):
    path = write_verification_bin(tmp_path / "lfw.bin", crops, ISSAME)
    vb = read_verification_bin(path)
    assert vb.name == "lfw" and len(vb) == 3 and vb.images == crops
    assert vb.issame.dtype == bool and vb.issame.tolist() == ISSAME
    a, b, same = vb.pair(1)
    assert a.shape == b.shape == (112, 112, 3) and a.dtype == np.uint8 and same is False
    np.testing.assert_array_equal(vb.decode(0, "rgb"), vb.decode(0)[:, :, ::-1])
    # The layout is InsightFace's: their loader (plain pickle, bytes encoding) reads it too.
    with open(path, "rb") as f:
        bins, issame_list = pickle.load(f, encoding="bytes")
    assert bins == crops and issame_list == ISSAME
    assert find_verification_bins(tmp_path) == {"lfw": path}


def test_verification_bin_writer_encodes_arrays(tmp_path, photos):
    img = cv2.resize(cv2.imread(str(photos / "biden.jpg")), (112, 112))
    vb = read_verification_bin(write_verification_bin(tmp_path / "x.bin", [img, img], [True]))
    assert np.abs(vb.decode(0).astype(int) - img.astype(int)).mean() < 4  # JPEG q95


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("labels_as", ["list", "numpy_bool_list", "numpy_array"])
def test_verification_bin_reads_every_pickle_flavour_of_the_structure(tmp_path, crops, protocol,
                                                                     labels_as):
    labels = {"list": ISSAME, "numpy_bool_list": [np.bool_(v) for v in ISSAME],
              "numpy_array": np.array(ISSAME)}[labels_as]
    images = [bytearray(c) if i % 2 else c for i, c in enumerate(crops)]
    path = tmp_path / "agedb_30.bin"
    path.write_bytes(pickle.dumps((images, labels), protocol=protocol))
    vb = read_verification_bin(path)
    assert vb.images == crops and vb.issame.tolist() == ISSAME


def test_verification_bin_reads_images_stored_as_uint8_arrays(tmp_path, crops):
    path = tmp_path / "calfw.bin"
    arrays = [np.frombuffer(c, dtype=np.uint8) for c in crops]
    path.write_bytes(pickle.dumps((arrays, ISSAME), protocol=2))
    assert read_verification_bin(path).images == crops


def test_verification_bin_reads_python2_pickles(tmp_path, crops):
    # What Python 2's cPickle wrote for the original files: BINSTRING images, NEWTRUE/NEWFALSE.
    body = b"\x80\x02]q\x00("
    for c in crops:
        body += b"T" + struct.pack("<I", len(c)) + c
    body += b"e]q\x01(" + b"".join(b"\x88" if v else b"\x89" for v in ISSAME) + b"e\x86q\x02."
    path = tmp_path / "cfp_fp.bin"
    path.write_bytes(body)
    vb = read_verification_bin(path)
    assert vb.images == crops and vb.issame.tolist() == ISSAME


class _RunsCommand:
    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("__import__('pathlib').Path('PWNED_EVAL').touch()",))


@pytest.mark.parametrize("where", ["top", "in_images", "in_labels"])
def test_verification_bin_refuses_malicious_pickle_without_running_it(tmp_path, crops, where,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    evil = _RunsCommand(f"touch {marker}")
    obj = {"top": evil,
           "in_images": (crops[:5] + [evil], ISSAME),
           "in_labels": (crops, [True, evil, False])}[where]
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(DatasetError, match=r"refused to load: the pickle asks for posix\.system"):
        read_verification_bin(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps((crops, [_CallsEval()] * 3), protocol=4))
    with pytest.raises(DatasetError, match=r"builtins\.eval"):
        read_verification_bin(path)
    assert not (tmp_path / "PWNED_EVAL").exists()


def test_verification_bin_refuses_object_arrays_and_other_types(tmp_path, crops):
    path = tmp_path / "x.bin"
    obj_array = np.array([True, "x", None], dtype=object)
    path.write_bytes(pickle.dumps((crops, obj_array), protocol=2))
    with pytest.raises(DatasetError, match="unexpected kind|refused"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps((crops, {"a": 1}), protocol=4))
    with pytest.raises(DatasetError, match="must be a list of booleans"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps((crops, [True, 2, False]), protocol=4))
    with pytest.raises(DatasetError, match="holds 2; expected booleans"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps((crops[:5], ISSAME), protocol=4))
    with pytest.raises(DatasetError, match="5 images for 3 pairs"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps((crops[:5] + ["text"], ISSAME), protocol=4))
    with pytest.raises(DatasetError, match="image 5 is a str"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps((crops[:5] + [b"GIF89a"], ISSAME), protocol=4))
    with pytest.raises(DatasetError, match="image 5 is not JPEG, PNG or BMP"):
        read_verification_bin(path)
    path.write_bytes(pickle.dumps(set(), protocol=4))
    with pytest.raises(DatasetError, match="expected a pickled"):
        read_verification_bin(path)


def test_verification_bin_truncated_file_is_a_clear_error(tmp_path, crops):
    path = write_verification_bin(tmp_path / "lfw.bin", crops, ISSAME)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="truncated or corrupt"):
        read_verification_bin(path)
    with pytest.raises(FileNotFoundError, match="nope.bin"):
        read_verification_bin(tmp_path / "nope.bin")


def test_verification_bin_undecodable_image_names_its_index(tmp_path, crops):
    broken = crops[:3] + [b"\xff\xd8" + b"\x00" * 50] + crops[4:]
    vb = read_verification_bin(write_verification_bin(tmp_path / "b.bin", broken, ISSAME))
    with pytest.raises(DatasetError, match="image 3 cannot be decoded"):
        vb.pair(1)


class _HugeBuffer:
    """A pickle that asks numpy's _frombuffer to build a buffer from an integer size."""

    def __reduce__(self):
        from numpy._core.numeric import _frombuffer

        return (_frombuffer, (10**12, np.dtype(bool), (10**12,), "C"))


def test_verification_bin_refuses_buffer_built_from_a_size(tmp_path, crops):
    path = tmp_path / "lfw.bin"
    path.write_bytes(pickle.dumps((crops, _HugeBuffer()), protocol=4))
    with pytest.raises(DatasetError, match="_frombuffer without a byte buffer"):
        read_verification_bin(path)
