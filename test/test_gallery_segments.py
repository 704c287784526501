"""Gallery writes proportional to the change: an enrolment or removal saved to the gallery's own
file adds a segment (its sha256 in the index, the index rename commits it); compaction rewrites
one arrays file and deletes the rest. Same guarantees as a full write: atomic, checksummed,
owner-only, old single-file galleries load."""
from __future__ import annotations

import json
import stat

import numpy as np
import pytest

from face_perception.gallery import Gallery, GalleryError, file_format


def unit(rng, n, d=8):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def base(tmp_path):
    """A saved gallery of 50 people (2 samples each) and the names of its files."""
    rng = np.random.default_rng(3)
    g = Gallery("seg-model", 8)
    for i in range(50):
        g.add(f"p{i:02d}", unit(rng, 2), sources=[f"p{i}a.jpg", f"p{i}b.jpg"])
    index = g.save(tmp_path / "people.json")
    return Gallery.load(index), index


def header(index):
    return json.loads(index.read_text())


def folder_files(index):
    return sorted(p.name for p in index.parent.iterdir())


def same(a: Gallery, b: Gallery):
    assert a.names == b.names
    for name in a.names:
        np.testing.assert_allclose(a.samples(name), b.samples(name), atol=1e-6)  # renormalised
        assert a.sources(name) == b.sources(name)
        np.testing.assert_allclose(a.mean(name), b.mean(name), atol=1e-6)


def test_enrol_and_remove_write_segments_not_the_base(base):
    g, index = base
    base_file = header(index)["arrays"]["file"]
    base_stat = (index.parent / base_file).stat()
    rng = np.random.default_rng(4)
    g.add("newcomer", unit(rng, 3), sources=["n1", "n2", "n3"])
    g.add("p07", unit(rng, 1), sources=["more"])  # more samples of an earlier person
    g.save(index)
    h = header(index)
    assert h["version"] == 2 and h["arrays"]["file"] == base_file
    assert [(s["kind"], s["num_identities"], s["num_samples"]) for s in h["segments"]] == [
        ("add", 2, 4)]
    seg = index.parent / h["segments"][0]["file"]
    assert seg.stat().st_size < base_stat.st_size / 5
    assert (index.parent / base_file).stat().st_mtime_ns == base_stat.st_mtime_ns  # untouched
    same(Gallery.load(index), g)  # another reader sees the change, samples in the same order

    g.remove("p03")
    g.remove("newcomer")
    g.save(index)
    h = header(index)
    assert [s["kind"] for s in h["segments"]] == ["add", "remove"]
    assert h["num_identities"] == 49 and h["num_samples"] == 99
    loaded = Gallery.load(index)
    same(loaded, g)
    assert "p03" not in loaded and loaded.count("p07") == 3
    for path in index.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_compaction_leaves_no_copy_of_a_removed_persons_embeddings(base):
    g, index = base
    with np.load(index.parent / header(index)["arrays"]["file"]) as z:  # p11's rows as stored
        start = int(z["counts"][:list(z["names"]).index("p11")].sum())
        secret = z["samples"][start:start + 2]
    g.remove("p11")
    g.save(index)
    # The tombstone alone leaves the data in the base file (documented in docs/privacy.md) ...
    assert any(secret[0].tobytes() in (index.parent / f).read_bytes()
               for f in folder_files(index))
    g.save(index, compact=True)
    files = folder_files(index)
    assert len(files) == 2 and header(index)["version"] == 1 and "segments" not in header(index)
    # ... compaction writes a new base and deletes the old files: no byte of p11 is left.
    for f in files:
        data = (index.parent / f).read_bytes()
        assert not any(row.tobytes() in data for row in secret), f
        assert "p11".encode("utf-32-le") not in data and b"p11" not in data, f
    same(Gallery.load(index), g)


def test_segments_beyond_the_fraction_compact_by_themselves(base, monkeypatch):
    g, index = base
    rng = np.random.default_rng(5)
    g.add("a", unit(rng, 1))
    g.save(index)
    assert len(header(index)["segments"]) == 1
    monkeypatch.setattr(file_format, "COMPACT_FRACTION", 0.0)
    monkeypatch.setattr(file_format.append_segments, "__defaults__", (0.0,))
    g.add("b", unit(rng, 1))
    g.save(index)
    assert header(index)["version"] == 1 and len(folder_files(index)) == 2
    same(Gallery.load(index), g)


def test_crash_between_segment_write_and_index_rename_keeps_the_previous_gallery(
        base, monkeypatch):
    g, index = base
    before_index = index.read_text()
    g.add("newcomer", unit(np.random.default_rng(6), 1))

    def crash(*args, **kwargs):
        raise OSError("power lost")

    monkeypatch.setattr(file_format, "atomic_write_text", crash)
    with pytest.raises(OSError, match="power lost"):
        g.save(index)
    monkeypatch.undo()
    assert index.read_text() == before_index
    loaded = Gallery.load(index)
    assert "newcomer" not in loaded and len(loaded) == 50
    # The segment file was written but nothing names it; the next save commits the change.
    assert len(folder_files(index)) == 3
    g.save(index)
    assert "newcomer" in Gallery.load(index)


def test_tampered_or_missing_segment_is_refused(base):
    g, index = base
    g.add("newcomer", unit(np.random.default_rng(8), 1))
    g.save(index)
    seg = index.parent / header(index)["segments"][0]["file"]
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(GalleryError, match=f"{seg.name} does not match its index"):
        Gallery.load(index)
    seg.unlink()
    with pytest.raises(GalleryError, match=f"{seg.name} named by .* is missing"):
        Gallery.load(index)


def test_edited_segment_list_is_refused(base):
    g, index = base
    g.add("newcomer", unit(np.random.default_rng(9), 1))
    g.save(index)
    h = header(index)
    h["segments"][0]["kind"] = "rename"
    index.write_text(json.dumps(h))
    with pytest.raises(GalleryError, match="kind"):
        Gallery.load(index)
    h["segments"][0]["kind"] = "add"
    h["num_identities"] += 1
    index.write_text(json.dumps(h))
    with pytest.raises(GalleryError, match="after its segments"):
        Gallery.load(index)


def test_another_writer_in_between_means_a_full_write(base):
    g, index = base
    other = Gallery.load(index)
    other.add("from_cli", unit(np.random.default_rng(10), 1))
    other.save(index)  # a segment on the base g also read
    g.add("from_node", unit(np.random.default_rng(11), 1))
    g.save(index)  # g's view is stale: it writes its whole gallery (last writer wins, as before)
    h = header(index)
    assert h["version"] == 1 and len(folder_files(index)) == 2
    assert Gallery.load(index).names[-1] == "from_node" and "from_cli" not in Gallery.load(index)


def test_rename_and_other_paths_write_everything(base, tmp_path):
    g, index = base
    g.rename("p01", "Paula")
    g.save(index)
    assert header(index)["version"] == 1
    g.add("x", unit(np.random.default_rng(12), 1))
    copy = g.save(tmp_path / "copy.json")  # another file: a full write there
    assert header(copy)["version"] == 1
    same(Gallery.load(copy), g)


def test_an_old_single_file_gallery_loads_and_takes_segments(base):
    g, index = base
    h = header(index)
    assert h["version"] == 1 and set(h["arrays"]) == {"file", "sha256", "bytes"}
    g.add("newcomer", unit(np.random.default_rng(13), 1))
    g.save(index)
    assert header(index)["arrays"]["file"] == h["arrays"]["file"]
    same(Gallery.load(index), g)
