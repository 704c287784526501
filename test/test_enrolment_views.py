"""The view choice rules on embeddings with known geometry: best first, then farthest; near
copies and poor views skipped; a group of views split into two people only beyond the 1:1
threshold."""
import numpy as np

from face_perception.enrolment.views import (
    View,
    already_enrolled_as,
    choose_distinct,
    two_people,
)


def unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def view(quality, direction, source=""):
    return View(np.zeros((2, 2, 3), np.uint8), quality, source or f"q{quality}", unit(direction))


def test_best_view_first_then_the_farthest_and_near_copies_skipped():
    views = [view(0.9, [1, 0, 0]), view(0.8, [1, 0, 0], "copy"), view(0.7, [1, 0.2, 0]),
             view(0.6, [1, 0, 0.6], "far"), view(0.2, [0, 0, 1], "poor")]
    chosen = choose_distinct(views, keep=3)
    assert [v.source for v in chosen] == ["q0.9", "far", "q0.7"]
    # The copy of the best view adds nothing; the poor view (< half the best) is never taken.
    assert [v.source for v in choose_distinct(views, keep=10)] == ["q0.9", "far", "q0.7"]
    assert [v.source for v in choose_distinct(views, keep=1)] == ["q0.9"]
    assert choose_distinct([], keep=3) == []


def test_one_person_seen_from_several_sides_is_not_two_people():
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal(16))
    views = np.stack([unit(base + 0.07 * rng.standard_normal(16)) for _ in range(8)])
    # Some pairs are below the threshold (the views are spread), but the two groups are not.
    assert (views @ views.T).min() < 0.9
    assert two_people(views, 0.9) is None
    assert two_people(views[:1], 0.9) is None


def test_two_people_in_one_track_are_split_with_their_group_sizes():
    rng = np.random.default_rng(4)
    a, b = unit(rng.standard_normal(16)), unit(rng.standard_normal(16))
    views = np.stack([unit(a + 0.05 * rng.standard_normal(16)) for _ in range(5)]
                     + [unit(b + 0.05 * rng.standard_normal(16)) for _ in range(3)])
    split = two_people(views, 0.9)
    assert split is not None and sorted(split.sizes) == [3, 5]
    assert split.similarity < 0.9 and "two people" in split.reason()


def test_duplicate_check_names_the_best_other_identity_only():
    from face_perception.gallery import Gallery

    g = Gallery("m", 3)
    g.add("ann", unit([1, 0, 0]))
    g.add("bob", unit([0, 1, 0]))
    probe = np.stack([unit([1, 0.05, 0])])
    assert already_enrolled_as(g, probe, "bob", 0.9)[0] == "ann"
    assert already_enrolled_as(g, probe, "ann", 0.9) is None  # more samples of ann: fine
    assert already_enrolled_as(g, np.stack([unit([0, 0, 1])]), "cy", 0.9) is None
    assert already_enrolled_as(Gallery("m", 3), probe, "cy", 0.9) is None
