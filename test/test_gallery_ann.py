"""The approximate (faiss IVF/HNSW) index of a saved gallery: results, the file beside the
gallery, rebuilt on change, a stale or damaged index file refused."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("faiss", reason="faiss-cpu is a declared dependency of the search backend")

from face_perception.gallery import Gallery  # noqa: E402
from face_perception.gallery.search import ann_paths  # noqa: E402

DIM = 32


def unit(rng, n):
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_gallery(path, n, seed=0, kind="ivf"):
    rng = np.random.default_rng(seed)
    g = Gallery("test-model", DIM, backend="faiss", faiss_index=kind)
    g.add_many([f"id{i}" for i in range(n)], unit(rng, n))
    g.save(path)
    return Gallery.load(path, backend="faiss", faiss_index=kind)


def queries_near(gallery, rows, seed=1):
    rng = np.random.default_rng(seed)
    q = gallery.means()[rows] + 0.3 * unit(rng, len(rows))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_finds_what_the_exact_search_finds(tmp_path, kind):
    g = make_gallery(tmp_path / "people.json", 1500, kind=kind)
    exact = Gallery.load(tmp_path / "people.json", backend="numpy", faiss_index="flat")
    q = queries_near(g, np.arange(0, 1500, 7))
    approx_hits = [h[0][0] for h in g.search(q, k=3)]
    exact_hits = [h[0][0] for h in exact.search(q, k=3)]
    # 1500 rows: 16 IVF lists, all probed; HNSW with ef_search 128 is exhaustive at this size.
    assert approx_hits == exact_hits == [f"id{i}" for i in range(0, 1500, 7)]
    record, index = ann_paths(tmp_path / "people.json")
    assert index.is_file() and json.loads(record.read_text())["kind"] == kind


def test_index_file_is_built_once_and_reused(tmp_path):
    g = make_gallery(tmp_path / "people.json", 800)
    g.search(queries_near(g, np.arange(3)))
    _, index = ann_paths(tmp_path / "people.json")
    built = index.stat().st_mtime_ns, index.read_bytes()
    again = Gallery.load(tmp_path / "people.json", backend="faiss", faiss_index="ivf")
    assert again.search(queries_near(again, np.array([5])))[0][0][0] == "id5"
    assert (index.stat().st_mtime_ns, index.read_bytes()) == built


def test_index_is_rebuilt_when_the_gallery_changes(tmp_path):
    path = tmp_path / "people.json"
    g = make_gallery(path, 800)
    g.search(queries_near(g, np.arange(3)))
    record, _ = ann_paths(path)
    before = json.loads(record.read_text())
    newcomer = unit(np.random.default_rng(9), 1)
    g.add("newcomer", newcomer)
    # Changed in memory, not saved: searched from memory, the file beside is left alone.
    assert g.search(newcomer)[0][0][0] == "newcomer"
    assert json.loads(record.read_text()) == before
    g.save(path)
    assert g.search(newcomer)[0][0][0] == "newcomer"
    after = json.loads(record.read_text())
    assert after["rows"] == before["rows"] + 1 and after["rows_sha256"] != before["rows_sha256"]


def test_stale_or_damaged_index_file_is_refused_and_rebuilt(tmp_path):
    a = make_gallery(tmp_path / "a" / "people.json", 600, seed=1)
    b = make_gallery(tmp_path / "b" / "people.json", 600, seed=2)
    a.search(queries_near(a, np.arange(2)))
    # b's folder gets a's index and record: built from other rows, so it must not be used.
    for src, dst in zip(ann_paths(tmp_path / "a" / "people.json"),
                        ann_paths(tmp_path / "b" / "people.json")):
        shutil.copyfile(src, dst)
    b = Gallery.load(tmp_path / "b" / "people.json", backend="faiss", faiss_index="ivf")
    q = queries_near(b, np.arange(0, 600, 11))
    assert [h[0][0] for h in b.search(q)] == [f"id{i}" for i in range(0, 600, 11)]
    record_b, index_b = ann_paths(tmp_path / "b" / "people.json")
    record_a, _ = ann_paths(tmp_path / "a" / "people.json")
    assert json.loads(record_b.read_text())["rows_sha256"] != \
        json.loads(record_a.read_text())["rows_sha256"]
    # A damaged index file with a matching record: refused, rebuilt, same answers.
    index_b.write_bytes(b"not a faiss index")
    b = Gallery.load(tmp_path / "b" / "people.json", backend="faiss", faiss_index="ivf")
    assert [h[0][0] for h in b.search(q)] == [f"id{i}" for i in range(0, 600, 11)]
    assert index_b.read_bytes() != b"not a faiss index"


def test_auto_stays_exact_below_the_approximate_size(tmp_path):
    g = make_gallery(tmp_path / "people.json", 500, kind="auto")
    g.search(queries_near(g, np.arange(3)))
    assert not any(p.exists() for p in ann_paths(tmp_path / "people.json"))


def test_unknown_index_kind_is_refused():
    from face_perception.gallery.validation import GalleryError

    with pytest.raises(GalleryError, match="faiss_index must be one of auto, flat, hnsw, ivf"):
        Gallery("m", DIM, faiss_index="lsh")


def test_removing_a_person_deletes_the_index_file_that_holds_their_vector(tmp_path):
    path = tmp_path / "people.json"
    g = make_gallery(path, 800)
    g.search(queries_near(g, np.arange(3)))
    record, index = ann_paths(path)
    assert index.is_file() and record.is_file()
    g.remove("id7")
    g.save(path)
    # The approximate index held a copy of id7's vector: it is gone with the change ...
    assert not index.exists() and not record.exists()
    # ... and rebuilt, without id7, by the next search.
    again = Gallery.load(path, backend="faiss", faiss_index="ivf")
    assert again.search(queries_near(again, np.array([8])))[0][0][0] in again.names
    assert index.is_file() and "id7" not in again.names
