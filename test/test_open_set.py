"""The open-set rule, its storage in a gallery file, the second-best identity, and calibration
arithmetic (no model needed: embeddings are built so that every similarity is known)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from face_perception.gallery import Gallery, GalleryError
from face_perception.open_set import (
    MODEL_DEFAULTS,
    OpenSetRule,
    default_rule,
    resolve_rule,
)
from face_perception.recognition.open_set_eval import (
    OpenSetScores,
    calibrate_gallery,
    calibrate_rule,
    fnir_at_fpir,
    look_alikes,
    outcome,
    threshold_for_fpir,
)

DLIB = SimpleNamespace(name="dlib_resnet", threshold=0.9062)


def at(sim: float) -> np.ndarray:
    """A 3-d unit vector whose cosine with (1, 0, 0) is ``sim``."""
    return np.array([sim, np.sqrt(1 - sim * sim), 0.0], np.float32)


def test_rule_needs_threshold_and_margin_and_round_trips():
    rule = OpenSetRule(0.93, 0.03)
    assert rule.accepts(0.95, 0.90) and not rule.accepts(0.95, 0.93)
    assert not rule.accepts(0.92) and rule.accepts(0.93)
    assert rule.decide([("a", 0.95), ("b", 0.80)]).name == "a"
    assert rule.decide([("a", 0.95), ("b", 0.94)]) is None
    assert OpenSetRule.from_dict(rule.to_dict()) == rule
    with pytest.raises(ValueError, match="gallery open_set: open-set threshold must be a finite"):
        OpenSetRule.from_dict({"threshold": "0.9", "margin": 0}, "gallery open_set")


def test_defaults_are_stricter_than_the_1to1_threshold_and_explicit_values_win():
    rule = default_rule(DLIB)
    assert rule == MODEL_DEFAULTS["dlib_resnet"] and rule.threshold > DLIB.threshold
    assert rule.margin > 0
    other = default_rule(SimpleNamespace(name="ir_50_512", threshold=0.3))
    assert other.threshold == 0.3 and other.margin > 0
    g = Gallery("dlib_resnet", 3)
    assert resolve_rule(DLIB, g) == (rule, "model")
    g.set_open_set({"threshold": 0.95, "margin": 0.05, "evidence": {"strangers": 100}})
    assert resolve_rule(DLIB, g) == (OpenSetRule(0.95, 0.05), "gallery")
    assert resolve_rule(DLIB, g, threshold=0.8) == (OpenSetRule(0.8, 0.05), "explicit+gallery")
    assert resolve_rule(DLIB, g, 0.8, 0.0) == (OpenSetRule(0.8, 0.0), "explicit")
    with pytest.raises(ValueError, match="cosine similarity in"):
        resolve_rule(DLIB, g, threshold=2.0)


def test_gallery_file_keeps_the_rule_and_refuses_a_damaged_one(tmp_path):
    g = Gallery("dlib_resnet", 3)
    g.add("a", at(1.0))
    stored = {"threshold": 0.95, "margin": 0.04, "evidence": {"fpir": 0.01, "strangers": 300}}
    g.set_open_set(stored)
    index = g.save(tmp_path / "people")
    assert json.loads(index.read_text())["open_set"] == stored
    assert Gallery.load(index).open_set == stored
    with pytest.raises(GalleryError, match="not a valid open-set rule"):
        g.set_open_set({"threshold": float("nan"), "margin": 0})
    header = json.loads(index.read_text())
    header["open_set"] = {"threshold": 0.95, "margin": -1}
    index.write_text(json.dumps(header))
    with pytest.raises(GalleryError, match=r"people.json: field 'open_set' is not a valid "
                                           r"open-set rule.*margin must be >= 0"):
        Gallery.load(index)
    g.set_open_set(None)
    assert "open_set" not in json.loads(g.save(tmp_path / "people").read_text())


@pytest.mark.parametrize("mode", ["sample", "mean"])
def test_second_best_is_another_identity_not_another_photo(mode):
    g = Gallery("m", 3)
    g.add("a", np.stack([at(0.99), at(0.98)]))  # two photos of a: close to each other
    g.add("b", at(0.90))
    rule = OpenSetRule(0.93, 0.03)
    (cat,) = g.match(at(1.0), rule, mode=mode)
    assert cat.name == "a" and cat.extra["second"] == pytest.approx(0.90, abs=2e-3)
    # Between the two people: above the threshold, too little lead over b.
    g.add("c", at(0.97))
    assert g.match(at(1.0), rule, mode=mode) == [None]
    assert g.match(at(1.0), 0.93, mode=mode)[0].name == "a"  # a bare number: no margin


def test_one_identity_has_no_second_and_only_the_threshold_applies():
    g = Gallery("m", 3)
    g.add("a", at(1.0))
    (cat,) = g.match(at(0.95), OpenSetRule(0.93, 0.5))
    assert cat.name == "a" and cat.extra["second"] is None


def scores(mated_best, mated_second, nonmated_best, nonmated_second, names=None):
    m = len(mated_best)
    names = names or ["p"] * m
    return OpenSetScores(["p"] * m, names, np.array(mated_best, float),
                         np.array(mated_second, float), np.array(nonmated_best, float),
                         np.array(nonmated_second, float), 2)


def test_threshold_for_fpir_counts_strangers_exactly():
    nb = np.linspace(0.80, 0.899, 100)  # 100 strangers
    ns = nb - 0.05
    # FPIR 0.1 allows 10 strangers: just above the 11th best.
    thr = threshold_for_fpir(nb, ns, 0.1)
    assert (nb >= thr).sum() == 10 and thr == pytest.approx(nb[89])
    assert threshold_for_fpir(nb, ns, 0.001) is None  # 100 strangers cannot show 0.1%
    # A margin over the gaps (0.05) keeps everyone out by itself.
    assert threshold_for_fpir(nb, ns, 0.01, margin=0.06) == -1.0


def test_calibration_picks_lowest_fnir_is_reproducible_and_reports_evidence():
    rng = np.random.default_rng(0)
    nb = rng.uniform(0.80, 0.93, 200)
    ns = nb - rng.uniform(0.0, 0.04, 200)  # strangers: two near identities
    mb = rng.uniform(0.92, 0.99, 50)
    ms = mb - rng.uniform(0.06, 0.15, 50)  # people: well ahead of the second identity
    s = scores(mb, ms, nb, ns)
    first = calibrate_rule(s, 0.01, floor=0.9062)
    assert first == calibrate_rule(s, 0.01, floor=0.9062)
    ev = first["evidence"]
    assert ev["fpir"] <= 0.01 and ev["strangers"] == 200 and ev["mated"] == 50
    rule = OpenSetRule(first["threshold"], first["margin"])
    assert outcome(s, rule)["fnir"] == ev["fnir"]
    # No other margin of the grid with its own FPIR-0.01 threshold misses fewer.
    for m in np.round(np.arange(0, 0.09, 0.01), 2):
        (row,) = fnir_at_fpir(s, (0.01,), margin=m)
        assert row["fnir"] >= ev["fnir"] or row["threshold"] < 0.9062
    assert first["threshold"] >= 0.9062  # never below the model's 1:1 threshold
    with pytest.raises(ValueError, match="needs at least 1000 stranger faces, got 200"):
        calibrate_rule(s, 0.001, floor=0.9)
    with pytest.raises(ValueError, match="mated probes"):
        calibrate_rule(scores([], [], nb, ns), 0.01, floor=0.9)


def test_wrong_names_count_as_misses_and_as_wrong():
    s = scores([0.99, 0.99], [0.5, 0.5], [0.5], [0.4], names=["p", "q"])
    res = outcome(s, OpenSetRule(0.9, 0.0))
    assert (res["named_right"], res["wrong_names"], res["missed"], res["fnir"]) == (1, 1, 0, 0.5)


def test_calibrate_gallery_stores_the_rule_and_refuses_unknown_identities():
    g = Gallery("dlib_resnet", 3)
    g.add("p", at(1.0))
    g.add("q", np.array([0.0, 0.0, 1.0], np.float32))
    strangers = np.stack([at(s) for s in np.linspace(0.5, 0.95, 100)])
    result = calibrate_gallery(g, DLIB, [("p", at(0.99))] * 5, strangers, 0.05)
    assert g.open_set == result and result["evidence"]["stranger_names"] <= 5
    with pytest.raises(ValueError, match=r"not in the gallery: \['zed'\]"):
        calibrate_gallery(g, DLIB, [("zed", at(0.99))], strangers, 0.05)


def test_look_alikes_lists_identities_closer_than_the_threshold():
    g = Gallery("m", 3)
    g.add("a", np.stack([at(1.0), np.array([0.0, 0.0, 1.0], np.float32)]))
    g.add("twin", at(0.97))
    g.add("far", np.array([0.0, -1.0, 0.0], np.float32))
    (pair,) = look_alikes(g, 0.93)
    assert pair[:2] == ("a", "twin") and pair[2] == pytest.approx(0.97, abs=1e-3)
    assert look_alikes(g, 0.93, mode="mean") == []  # a's mean is dragged away by its far photo
