"""dlib's serialization format read in pure Python: values, the shipped model, bad files."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from face_perception.recognition.backbones.dlib_resnet import anet_spec
from face_perception.recognition.dlib_format import (
    DlibFormatError,
    DlibReader,
    layer,
    pack_float,
    pack_int,
    pack_string,
    pack_tensor,
    parse_network,
    read_network_file,
)
from face_perception.recognition.pretrained import dlib_model_file


@pytest.fixture(scope="module")
def dat_bytes() -> bytes:
    return dlib_model_file().read_bytes()


def test_integers_use_dlibs_control_byte_encoding():
    # Bytes as dlib writes them: size nibble, sign bit 0x80, little-endian magnitude.
    r = DlibReader(b"\x01\x00" b"\x01\x02" b"\x81\x1c" b"\x02\x34\x12" b"\x03\x0a\xd7\xa3")
    assert [r.read_int() for _ in range(5)] == [0, 2, -28, 0x1234, 0xA3D70A]
    for value in (0, 1, -1, 255, 256, -70000, 2**62, -(2**62)):
        assert DlibReader(pack_int(value)).read_int() == value


def test_floats_are_mantissa_times_two_to_the_exponent():
    # The loss margin of the shipped model: mantissa 0xa3d70a, exponent -28 -> 0.04 (float32).
    assert DlibReader(b"\x03\x0a\xd7\xa3\x81\x1c").read_float() == pytest.approx(0.04, abs=1e-8)
    for value in (0.0, 1.0, -2.5, 122.782, 1e-30, 3.4e38):
        assert DlibReader(pack_float(value)).read_float() == value
    assert DlibReader(pack_float(math.inf)).read_float() == math.inf
    assert math.isnan(DlibReader(pack_float(math.nan)).read_float())


def test_tensor_round_trip_keeps_shape_and_values():
    a = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4) / 7
    r = DlibReader(pack_tensor(a) + pack_string("con_5") + b"1")
    np.testing.assert_array_equal(r.read_tensor(), a)
    assert r.read_string() == "con_5"
    assert r.read_bool() is True


def test_shipped_model_parses_into_dlibs_anet_type(dat_bytes):
    net = parse_network(dat_bytes, anet_spec())
    assert net.input_kind == "input_rgb_image_sized" and net.input_size == (150, 150)
    np.testing.assert_allclose(net.avg_rgb, (122.782, 117.001, 104.298), atol=1e-4)
    assert net.loss["distance_threshold"] == pytest.approx(0.6)
    learned = net.learned()
    assert [p.kind for p in learned] == ["con", "affine"] * 29 + ["fc"]
    assert learned[0].params["weight"].shape == (32, 3, 7, 7)
    assert learned[-1].params["weight"].shape == (256, 128)
    total = sum(v.size for p in learned for v in p.params.values())
    assert 5_500_000 < total < 5_700_000  # dlib's model has about 5.6M parameters
    assert all(np.all(np.isfinite(v)) for p in learned for v in p.params.values())


@pytest.mark.parametrize("cut", [0, 1, 5, 40, 1000, 19_000, 5_000_000, -1])
def test_truncated_file_raises_format_error_with_offset(dat_bytes, cut):
    data = dat_bytes[:cut]
    with pytest.raises(DlibFormatError, match="offset") as info:
        parse_network(data, anet_spec(), path="model.dat")
    assert 0 <= info.value.offset <= len(data)
    assert "model.dat" in str(info.value)


def test_random_corruption_never_crashes(dat_bytes):
    # Change bytes where layers begin (version strings, sizes, tensor headers) and in the
    # file header: every outcome is a clean parse (a harmless field) or a DlibFormatError.
    spec = anet_spec()
    net = parse_network(dat_bytes, spec)
    targets = list(range(0, 400)) + [p.offset + k for p in net.layers for k in range(40)]
    rng = random.Random(4)
    errors = 0
    for _ in range(60):
        data = bytearray(dat_bytes)
        data[rng.choice(targets)] = rng.randrange(256)
        try:
            parse_network(bytes(data), spec)
        except DlibFormatError:
            errors += 1
    assert errors > 30


def test_trailing_bytes_are_refused(dat_bytes):
    with pytest.raises(DlibFormatError, match="unexpected bytes after"):
        parse_network(dat_bytes + b"\x00", anet_spec())


def test_other_network_type_is_refused(dat_bytes):
    spec = anet_spec()
    # Claim the first conv has 64 filters: the parser must notice it reads 32.
    i = max(k for k, s in enumerate(spec) if s.kind == "con")
    spec[i] = layer("con", num_filters=64, nr=7, nc=7, stride=2)
    with pytest.raises(DlibFormatError, match="32 filters, the network type needs 64"):
        parse_network(dat_bytes, spec)


def test_non_dlib_file_is_refused(tmp_path):
    path = tmp_path / "not_a_model.dat"
    path.write_bytes(b"PK\x03\x04 this is a zip file")
    with pytest.raises(DlibFormatError, match="not_a_model.dat"):
        read_network_file(path, anet_spec())
    with pytest.raises(FileNotFoundError, match="missing.dat"):
        read_network_file(tmp_path / "missing.dat", anet_spec())
