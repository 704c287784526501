"""Gallery: enrolment, identity edits, validation and cosine search (in memory)."""
from __future__ import annotations

import numpy as np
import pytest

from face_perception.gallery import Gallery, GalleryError
from face_perception.types import Category


def unit(rng, n, d=8):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_gallery_keeps_every_sample_and_normalised_mean(rng):
    g = Gallery("m", 8)
    a = unit(rng, 3)
    assert g.add("alice", a[:2]) == 2
    assert g.add("alice", a[2] * 5.0, sources="late.jpg") == 3  # appends, normalises
    assert len(g) == 1 and "alice" in g and g.num_samples == 3
    np.testing.assert_allclose(g.samples("alice"), a, atol=1e-6)
    expected = a.mean(axis=0)
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(g.mean("alice"), expected, atol=1e-6)
    assert g.sources("alice") == ["", "", "late.jpg"]
    assert g.count("alice") == 3


def test_gallery_search_returns_top_k_distinct_names_best_first(rng):
    g = Gallery("m", 8)
    people = unit(rng, 5)
    for i, e in enumerate(people):
        g.add(f"p{i}", e)
    results = g.search(people[[3, 1]], k=3)
    assert [r[0][0] for r in results] == ["p3", "p1"]
    for r in results:
        assert len(r) == 3 and len({n for n, _ in r}) == 3
        sims = [s for _, s in r]
        assert sims == sorted(sims, reverse=True)
        assert sims[0] == pytest.approx(1.0, abs=1e-5)
    # The similarities are the cosine similarities of the means.
    q = people[3]
    for name, sim in results[0]:
        assert sim == pytest.approx(float(g.mean(name) @ q), abs=1e-5)
    # k larger than the gallery gives every identity once.
    assert len(g.search(q, k=50)[0]) == 5


def test_gallery_sample_mode_matches_best_sample_not_mean(rng):
    g = Gallery("m", 2)
    # bob's two samples point in very different directions; his mean matches neither well.
    g.add("bob", [[1.0, 0.0], [0.0, 1.0]])
    g.add("carol", [[0.8, 0.6]])
    q = np.array([1.0, 0.0], np.float32)
    assert g.search(q, k=1, mode="mean")[0][0][0] == "carol"
    best = g.search(q, k=2, mode="sample")[0]
    assert best[0] == ("bob", pytest.approx(1.0))
    assert best[1] == ("carol", pytest.approx(0.8))


def test_gallery_match_gives_category_or_none_by_threshold(rng):
    g = Gallery("m", 2)
    g.add("x", [1.0, 0.0])
    g.add("y", [0.0, 1.0])
    q = np.array([[1.0, 0.1], [0.7, 0.7], [-1.0, 0.0]], np.float32)
    out = g.match(q, threshold=0.9)
    assert isinstance(out[0], Category) and out[0].name == "x"
    assert out[0].confidence == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)
    assert out[1] is None  # cos 45 degrees = 0.707 < 0.9
    assert out[2] is None
    assert g.match(q[1], threshold=0.7)[0].name in {"x", "y"}


def test_gallery_remove_and_rename_keep_the_rest_intact(rng):
    g = Gallery("m", 8)
    e = unit(rng, 6)
    g.add("a", e[:2])
    g.add("b", e[2:4])
    g.add("c", e[4:])
    g.remove("b")
    assert g.names == ["a", "c"] and g.num_samples == 4 and "b" not in g
    np.testing.assert_allclose(g.samples("c"), e[4:], atol=1e-6)
    assert g.search(e[4], k=1)[0][0][0] == "c"
    assert g.search(e[4], k=1, mode="sample")[0][0] == ("c", pytest.approx(1.0, abs=1e-5))
    g.rename("c", "carla")
    assert g.names == ["a", "carla"]
    assert g.search(e[5], k=1, mode="sample")[0][0][0] == "carla"
    with pytest.raises(GalleryError, match="already exists"):
        g.rename("a", "carla")
    with pytest.raises(GalleryError, match="no identity named 'b'"):
        g.remove("b")
    g.remove("a")
    g.remove("carla")
    assert len(g) == 0 and g.num_samples == 0


def test_gallery_add_many_equals_repeated_add(rng):
    e = unit(rng, 7)
    names = ["a", "b", "a", "c", "b", "a", "d"]
    one = Gallery("m", 8)
    for n, x in zip(names, e):
        one.add(n, x)
    many = Gallery("m", 8)
    many.add_many(names, e, sources=[f"{i}.jpg" for i in range(7)])
    assert one.names == many.names == ["a", "b", "c", "d"]
    np.testing.assert_allclose(one.means(), many.means(), atol=1e-6)
    assert many.sources("a") == ["0.jpg", "2.jpg", "5.jpg"]


@pytest.mark.parametrize("bad, message", [
    (np.ones(7, np.float32), "size 7 but this gallery's model 'm' makes embeddings of size 8"),
    (np.full(8, np.nan, np.float32), "row 0 contains NaN or Inf"),
    (np.array([[1.0] * 8, [np.inf] + [0.0] * 7], np.float32), "row 1 contains NaN or Inf"),
    (np.zeros(8, np.float32), "row 0 is a zero vector"),
    (np.ones((2, 2, 8), np.float32), r"shape \(D,\) or \(N, D\)"),
    ("abc", "numeric"),
])
def test_gallery_refuses_bad_embeddings_naming_the_fault(bad, message):
    g = Gallery("m", 8)
    with pytest.raises(GalleryError, match=message):
        g.add("a", bad)
    assert len(g) == 0 and g.num_samples == 0


@pytest.mark.parametrize("name", ["", "   ", "a\x00b", "tab\tname", 7, None])
def test_gallery_refuses_empty_or_non_text_names(name):
    g = Gallery("m", 2)
    with pytest.raises(GalleryError, match="name"):
        g.add(name, [1.0, 0.0])
    assert len(g) == 0


def test_gallery_accepts_unicode_names_with_spaces():
    g = Gallery("m", 2)
    g.add("José María Ölund", [1.0, 0.0])
    g.add("王 小明", [0.0, 1.0])
    assert g.search([0.1, 1.0])[0][0][0] == "王 小明"


def test_gallery_search_on_empty_gallery_says_it_is_empty():
    g = Gallery("m", 2)
    with pytest.raises(GalleryError, match="gallery is empty"):
        g.search([1.0, 0.0])
    with pytest.raises(GalleryError, match="gallery is empty"):
        g.match([1.0, 0.0], 0.5)


def test_gallery_refuses_bad_queries_and_parameters():
    g = Gallery("m", 2)
    g.add("a", [1.0, 0.0])
    with pytest.raises(GalleryError, match="size 3"):
        g.search([1.0, 0.0, 0.0])
    with pytest.raises(GalleryError, match="zero vector"):
        g.match([0.0, 0.0], 0.5)
    with pytest.raises(GalleryError, match="k must be a positive integer"):
        g.search([1.0, 0.0], k=0)
    with pytest.raises(GalleryError, match="unknown search mode"):
        g.search([1.0, 0.0], mode="median")
    with pytest.raises(GalleryError, match="threshold"):
        g.match([1.0, 0.0], float("nan"))
    with pytest.raises(GalleryError, match="threshold must be a number, got None"):
        g.match([1.0, 0.0], None)
    assert g.search(np.zeros((0, 2), np.float32)) == []
    with pytest.raises(GalleryError, match="model_id"):
        Gallery("", 2)
    with pytest.raises(GalleryError, match="embedding_size"):
        Gallery("m", 0)
    with pytest.raises(ValueError, match="backend"):
        Gallery("m", 2, backend="annoy")
