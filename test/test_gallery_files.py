"""Gallery files: pickle-free round trips, atomic writes, refusal of other models and damage."""
from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from face_perception.files import sha256_file
from face_perception.gallery import Gallery, GalleryError, load_or_create


def unit(rng, n, d=8):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def saved(tmp_path):
    rng = np.random.default_rng(7)
    g = Gallery("dlib_resnet_v1", 8)
    g.add("obama", unit(rng, 3), sources=["o1.jpg", "o2.jpg", "o3.jpg"])
    g.add("biden", unit(rng, 1))
    g.add("Zoë Ünïcode", unit(rng, 2))
    index = g.save(tmp_path / "people")
    return g, index


def arrays_file(index: Path) -> Path:
    return index.parent / json.loads(index.read_text())["arrays"]["file"]


def test_gallery_round_trip_keeps_names_samples_sources_and_search(saved):
    g, index = saved
    assert index.name == "people.json"
    assert sorted(p.name for p in index.parent.iterdir()) == sorted(
        ["people.json", arrays_file(index).name])  # no temporary files left behind
    h = Gallery.load(index, model_id="dlib_resnet_v1", embedding_size=8)
    assert h.names == g.names and h.num_samples == g.num_samples
    for name in g.names:
        np.testing.assert_allclose(h.samples(name), g.samples(name), atol=1e-7)
        np.testing.assert_allclose(h.mean(name), g.mean(name), atol=1e-6)
        assert h.sources(name) == g.sources(name)
    q = g.samples("obama")
    assert h.search(q, k=3) == g.search(q, k=3)
    # "people", "people.json" and "people.npz" all name the same gallery.
    assert Gallery.load(index.with_suffix("")).names == g.names
    assert Gallery.load(index.with_suffix(".npz")).names == g.names


def test_gallery_incremental_changes_persist_across_saves(saved):
    g, index = saved
    first_arrays = arrays_file(index)
    rng = np.random.default_rng(8)
    h = Gallery.load(index)
    extra = unit(rng, 2)
    h.add("biden", extra, sources=["b2.jpg", "b3.jpg"])
    h.remove("obama")
    h.rename("Zoë Ünïcode", "zoe")
    h.add("new person", unit(rng, 1))
    h.save(index)
    # The old arrays file is replaced, not left to pile up.
    assert not first_arrays.exists() and arrays_file(index).exists()
    k = Gallery.load(index)
    assert k.names == ["biden", "zoe", "new person"]
    assert k.count("biden") == 3 and k.sources("biden") == ["", "b2.jpg", "b3.jpg"]
    np.testing.assert_allclose(k.samples("biden")[1:], extra, atol=1e-7)
    np.testing.assert_allclose(k.samples("zoe"), g.samples("Zoë Ünïcode"), atol=1e-7)


def test_gallery_refuses_other_model(saved):
    _, index = saved
    with pytest.raises(GalleryError) as err:
        Gallery.load(index, model_id="arcface_r100", embedding_size=512)
    msg = str(err.value)
    assert "'dlib_resnet_v1' (embedding size 8)" in msg
    assert "'arcface_r100' (embedding size 512)" in msg
    with pytest.raises(GalleryError, match="embedding size 8.*embedding size 128"):
        Gallery.load(index, model_id="dlib_resnet_v1", embedding_size=128)
    with pytest.raises(GalleryError, match="'other'"):
        load_or_create(index, "other", 8)


def test_load_or_create_makes_new_gallery_only_when_none_exists(saved, tmp_path):
    _, index = saved
    assert load_or_create(index, "dlib_resnet_v1", 8).names == ["obama", "biden", "Zoë Ünïcode"]
    fresh = load_or_create(tmp_path / "nobody", "dlib_resnet_v1", 8)
    assert len(fresh) == 0 and not Gallery.exists(tmp_path / "nobody")


def test_gallery_refuses_truncated_npz(saved):
    _, index = saved
    npz = arrays_file(index)
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(GalleryError, match="truncated or was modified"):
        Gallery.load(index)


def test_gallery_refuses_npz_with_flipped_byte(saved):
    _, index = saved
    npz = arrays_file(index)
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x01
    npz.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match="sha256"):
        Gallery.load(index)


def test_gallery_refuses_missing_npz(saved):
    _, index = saved
    arrays_file(index).unlink()
    with pytest.raises(GalleryError, match="is missing; copy all files"):
        Gallery.load(index)


@pytest.mark.parametrize("edit, message", [
    (lambda text: text[: len(text) // 2], "bad JSON"),
    (lambda text: text.replace('"num_samples": 6', '"num_samples": 5'), "shape"),
    (lambda text: text.replace('"num_identities": 3', '"num_identities": 4'), "shape"),
    (lambda text: text.replace('"version": 1', '"version": 9'), "format version 9"),
    (lambda text: text.replace('"embedding_size": 8', '"embedding_size": "8"'),
     "'embedding_size' is missing or not a int"),
    (lambda text: text.replace('"face_perception.gallery"', '"something.else"'),
     "not a face_perception gallery"),
    (lambda text: text.replace('"file": "people.', '"file": "../people.'), "same folder"),
    (lambda text: json.dumps([1, 2, 3]), "not a face_perception gallery"),
])
def test_gallery_refuses_edited_json_index(saved, edit, message):
    _, index = saved
    index.write_text(edit(index.read_text()))
    with pytest.raises(GalleryError, match=message):
        Gallery.load(index)


def test_gallery_refuses_edited_sha_in_index(saved):
    _, index = saved
    header = json.loads(index.read_text())
    header["arrays"]["sha256"] = "0" * 64
    index.write_text(json.dumps(header))
    with pytest.raises(GalleryError, match="does not match its index"):
        Gallery.load(index)


def test_gallery_missing_index_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        Gallery.load(tmp_path / "nothing")


def forge(index: Path, arrays: dict, **header_changes) -> None:
    """Replace a gallery's arrays with ``arrays`` and make the index agree (a careful forger)."""
    npz = arrays_file(index)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz.write_bytes(buf.getvalue())
    header = json.loads(index.read_text())
    header["arrays"].update(sha256=sha256_file(npz), bytes=npz.stat().st_size)
    header.update(header_changes)
    index.write_text(json.dumps(header))


class _Boom:
    """Unpickling this runs code: it must never happen on load."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_gallery_load_never_unpickles(saved, tmp_path):
    _, index = saved
    marker = tmp_path / "pwned"
    payload = np.empty(1, dtype=object)
    payload[0] = _Boom(str(marker))
    g = Gallery.load(index)
    arrays = {"names": np.array(g.names), "counts": np.array([3, 1, 2]),
              "samples": np.concatenate([g.samples(n) for n in g.names]),
              "sources": payload}
    forge(index, arrays)
    with pytest.raises(GalleryError, match="allow_pickle=False|Object arrays"):
        Gallery.load(index)
    assert not marker.exists()


def test_gallery_refuses_forged_arrays_with_consistent_checksum(saved):
    _, index = saved
    g = Gallery.load(index)
    samples = np.concatenate([g.samples(n) for n in g.names])
    good = {"names": np.array(g.names), "counts": np.array([3, 1, 2]), "samples": samples,
            "sources": np.array([""] * 6)}
    forge(index, dict(good, counts=np.array([3, 1, 1])))
    with pytest.raises(GalleryError, match="do not add up"):
        Gallery.load(index)
    forge(index, dict(good, samples=samples * 2))
    with pytest.raises(GalleryError, match="not unit vectors"):
        Gallery.load(index)
    forge(index, dict(good, names=np.array(["a", "a", "b"])))
    with pytest.raises(GalleryError, match="not unique"):
        Gallery.load(index)
    forge(index, dict(good, samples=samples.astype(np.float64)))
    with pytest.raises(GalleryError, match="float32"):
        Gallery.load(index)
    forge(index, {k: v for k, v in good.items() if k != "sources"})
    with pytest.raises(GalleryError, match="holds arrays"):
        Gallery.load(index)


def test_gallery_save_is_atomic_when_interrupted(saved, monkeypatch):
    g, index = saved
    before = index.read_text()
    g.add("late", np.eye(8, dtype=np.float32)[0])
    real_replace = os.replace

    def crash_on_index(src, dst):
        if str(dst).endswith(".json"):
            raise OSError("disk full (simulated)")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_index)
    with pytest.raises(OSError, match="simulated"):
        g.save(index)
    monkeypatch.setattr(os, "replace", real_replace)
    # The old index still names the old arrays, which are untouched: the old gallery loads.
    assert index.read_text() == before
    assert Gallery.load(index).names == ["obama", "biden", "Zoë Ünïcode"]
    assert not [p for p in index.parent.iterdir() if p.name.endswith(".tmp")]


def test_empty_gallery_round_trips(tmp_path):
    index = Gallery("m", 4).save(tmp_path / "empty.json")
    g = Gallery.load(index, model_id="m", embedding_size=4)
    assert len(g) == 0 and g.num_samples == 0
    g.add("a", [1, 0, 0, 0])
    g.save(index)
    assert Gallery.load(index).names == ["a"]


def test_gallery_load_rereads_index_replaced_by_a_concurrent_save(saved, monkeypatch):
    g, index = saved
    import face_perception.gallery.file_format as gallery_module

    real_read_arrays = gallery_module._read_arrays
    calls = []

    def save_in_between(idx, header):
        # Another process saves a changed gallery after we read the index, before the arrays.
        if not calls:
            g.add("newcomer", np.eye(8, dtype=np.float32)[1])
            g.save(index)
        calls.append(header["num_identities"])
        return real_read_arrays(idx, header)

    monkeypatch.setattr(gallery_module, "_read_arrays", save_in_between)
    loaded = Gallery.load(index)
    assert calls == [3, 4] and loaded.names[-1] == "newcomer"


def test_gallery_files_are_readable_by_their_owner_only(saved):
    # Embeddings with names are personal data: both files are created with mode 0600, whatever
    # the umask, and stay so when the gallery is saved again.
    g, index = saved
    for _ in range(2):
        for path in (index, arrays_file(index)):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        g.add("another", np.eye(8, dtype=np.float32)[2])
        g.save(index)


def test_per_sample_quality_survives_segments_removal_and_compaction(saved):
    g, index = saved
    rng = np.random.default_rng(9)
    g.add("crowd", unit(rng, 300))  # a base large enough that small changes go to segments
    g.save(index)
    h = Gallery.load(index)
    # Samples enrolled before qualities existed read as NaN ("not measured").
    assert np.isnan(h.qualities("obama")).all() and len(h.qualities("obama")) == 3
    assert "qualities" not in np.load(arrays_file(index), allow_pickle=False).files
    h.add("obama", unit(rng, 2), qualities=[0.9, 0.4])
    h.add("carol", unit(rng, 1), qualities=[0.75])
    h.save(index)  # a segment
    assert json.loads(index.read_text())["segments"]
    k = Gallery.load(index)
    np.testing.assert_allclose(k.qualities("obama"), [np.nan, np.nan, np.nan, 0.9, 0.4])
    np.testing.assert_allclose(k.qualities("carol"), [0.75])
    k.remove("biden")
    k.save(index, compact=True)
    m = Gallery.load(index)
    assert m.names == ["obama", "Zoë Ünïcode", "crowd", "carol"]
    np.testing.assert_allclose(m.qualities("obama"), [np.nan, np.nan, np.nan, 0.9, 0.4])
    np.testing.assert_allclose(m.qualities("carol"), [0.75])
    assert np.isnan(m.qualities("Zoë Ünïcode")).all()


@pytest.mark.parametrize("bad", [[0.5], [1.5, 0.2], [float("inf"), 0.1], ["x", "y"]])
def test_gallery_refuses_qualities_of_wrong_count_or_range(bad):
    g = Gallery("m", 8)
    with pytest.raises(GalleryError, match="qualities"):
        g.add("a", unit(np.random.default_rng(1), 2), qualities=bad)
    assert len(g) == 0
