"""Verification metrics on synthetic scores whose right answers are known."""
from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest

from face_perception.recognition.verification import (
    EvaluationError,
    best_threshold,
    check_pairs,
    evaluate_verification,
    pair_similarities,
    roc_auc,
    roc_curve,
    save_roc_plot,
    tar_at_far,
)


def phi(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def interleaved(pos, neg):
    """Pairs alternating same/different, as LFW-style lists give balanced folds."""
    scores = np.empty(len(pos) + len(neg))
    scores[0::2], scores[1::2] = pos, neg
    labels = np.zeros(len(scores), bool)
    labels[0::2] = True
    return scores, labels


def test_perfectly_separable_scores_give_accuracy_one_auc_one_eer_zero():
    rng = np.random.default_rng(0)
    scores, labels = interleaved(rng.uniform(0.6, 1.0, 600), rng.uniform(-0.2, 0.5, 600))
    r = evaluate_verification(scores, labels)
    assert r.accuracy_mean == 1.0 and r.accuracy_std == 0.0
    assert r.fold_accuracies == [1.0] * 10
    assert all(0.5 <= t <= 0.6 for t in r.fold_thresholds)
    assert r.auc == 1.0 and r.eer == 0.0
    assert r.accuracy_at_threshold == 1.0 and 0.5 <= r.threshold <= 0.6
    tar = {t.far: t for t in r.tar_at_far}
    assert tar[1e-2].tar == 1.0 and tar[1e-2].achieved_far <= 1e-2


def test_inverted_scores_give_auc_zero():
    scores, labels = interleaved(np.full(50, 0.1), np.full(50, 0.9))
    fpr, tpr, _ = roc_curve(*check_pairs(scores, labels))
    assert roc_auc(fpr, tpr) == 0.0


def test_gaussian_scores_match_the_analytic_answers():
    # same ~ N(1, 1), different ~ N(0, 1): AUC = Phi(1/sqrt 2), EER = Phi(-1/2), best accuracy
    # Phi(1/2) at threshold 1/2, TAR@FAR 1e-2 = 1 - Phi(z_0.99 - 1).
    rng = np.random.default_rng(1)
    n = 200_000
    scores, labels = interleaved(rng.normal(1.0, 1.0, n), rng.normal(0.0, 1.0, n))
    r = evaluate_verification(scores, labels)
    assert r.auc == pytest.approx(phi(1 / math.sqrt(2)), abs=3e-3)
    assert r.eer == pytest.approx(phi(-0.5), abs=3e-3)
    assert r.eer_threshold == pytest.approx(0.5, abs=0.02)
    assert r.accuracy_mean == pytest.approx(phi(0.5), abs=4e-3)
    assert r.threshold == pytest.approx(0.5, abs=0.05)
    tar = {t.far: t for t in r.tar_at_far}
    assert tar[1e-2].tar == pytest.approx(1 - phi(2.3263 - 1.0), abs=4e-3)
    assert tar[1e-3].tar == pytest.approx(1 - phi(3.0902 - 1.0), abs=3e-3)
    assert tar[1e-2].achieved_far == pytest.approx(1e-2, abs=1e-4)


def test_auc_equals_pairwise_ranking_probability_with_ties():
    rng = np.random.default_rng(2)
    pos = rng.integers(0, 6, 40).astype(float)  # few distinct values: many ties
    neg = rng.integers(0, 5, 55).astype(float)
    wins = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(40, bool), np.zeros(55, bool)]
    fpr, tpr, thr = roc_curve(scores, labels)
    assert roc_auc(fpr, tpr) == pytest.approx(wins, abs=1e-12)
    # Every ROC point is what its threshold really accepts.
    for f, t, th in zip(fpr, tpr, thr):
        assert f == pytest.approx(np.mean(neg >= th)) and t == pytest.approx(np.mean(pos >= th))


def test_best_threshold_is_exact_against_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(20):
        scores = np.round(rng.normal(size=60), 1)
        labels = rng.random(60) < 0.5
        thr, acc = best_threshold(scores, labels)
        brute = max(np.mean((scores >= t) == labels) for t in np.r_[scores, np.inf])
        assert acc == pytest.approx(brute)
        assert np.mean((scores >= thr) == labels) == pytest.approx(acc)


def test_each_fold_threshold_is_chosen_on_the_other_nine_folds():
    rng = np.random.default_rng(4)
    scores, labels = interleaved(rng.normal(1.5, 1, 300), rng.normal(0, 1, 300))
    r = evaluate_verification(scores, labels, n_folds=10)
    folds = np.array_split(np.arange(600), 10)
    for i, test in enumerate(folds):
        train = np.setdiff1d(np.arange(600), test)
        thr, _ = best_threshold(scores[train], labels[train])
        assert r.fold_thresholds[i] == thr
        assert r.fold_accuracies[i] == np.mean((scores[test] >= thr) == labels[test])
    assert r.accuracy_mean == pytest.approx(np.mean(r.fold_accuracies))
    assert r.accuracy_std == pytest.approx(np.std(r.fold_accuracies))


def test_report_warns_when_pair_order_leaves_folds_unbalanced():
    rng = np.random.default_rng(9)
    pos, neg = rng.normal(1, 1, 300), rng.normal(0, 1, 300)
    balanced = evaluate_verification(*interleaved(pos, neg))
    assert balanced.fold_same_fractions == [0.5] * 10 and "warning" not in balanced.summary()
    grouped = evaluate_verification(np.r_[pos, neg], np.r_[np.ones(300, bool), np.zeros(300, bool)])
    assert grouped.fold_same_fractions[0] == 1.0 and grouped.fold_same_fractions[-1] == 0.0
    assert "warning: folds are unbalanced" in grouped.summary()


def test_distances_give_the_same_metrics_with_thresholds_in_distance_units():
    rng = np.random.default_rng(5)
    sims, labels = interleaved(rng.normal(0.7, 0.1, 500), rng.normal(0.3, 0.1, 500))
    dists = 1.0 - sims
    a = evaluate_verification(sims, labels, kind="similarity")
    b = evaluate_verification(dists, labels, kind="distance")
    assert b.accuracy_mean == a.accuracy_mean and b.auc == pytest.approx(a.auc)
    assert b.eer == pytest.approx(a.eer)
    # Same rule in both units: "same iff distance <= threshold".
    assert np.mean((dists <= b.threshold) == labels) == pytest.approx(b.accuracy_at_threshold)
    assert b.threshold == pytest.approx(1.0 - a.threshold, abs=1e-9)


def test_tar_at_far_is_none_with_reason_when_too_few_different_pairs():
    rng = np.random.default_rng(6)
    scores, labels = interleaved(rng.normal(1, 1, 500), rng.normal(0, 1, 500))
    r = evaluate_verification(scores, labels)
    tar = {t.far: t for t in r.tar_at_far}
    assert tar[1e-2].tar is not None
    assert tar[1e-3].tar is None and "needs at least 1000 different pairs, got 500" in \
        tar[1e-3].reason
    assert tar[1e-4].tar is None and "10000" in tar[1e-4].reason
    assert "TAR @ FAR 0.0001: n/a" in r.summary()
    d = r.to_dict()
    assert d["tar_at_far"][1]["tar"] is None and "roc_fpr" not in d
    with_roc = json.loads(json.dumps(r.to_dict(include_roc=True), allow_nan=False))
    assert with_roc["roc_thresholds"][0] is None and len(with_roc["roc_fpr"]) == len(r.roc_fpr)


def test_tar_at_far_allows_exactly_the_permitted_false_accepts():
    neg = np.arange(100) / 100.0  # 0.00 .. 0.99
    pos = np.array([0.985, 0.975, 0.5, 0.995])
    scores = np.r_[pos, neg]
    labels = np.r_[np.ones(4, bool), np.zeros(100, bool)]
    t = tar_at_far(scores, labels, 1e-2)  # one false accept allowed: only 0.99 passes
    assert t.achieved_far == 0.01 and 0.98 < t.threshold <= 0.99
    assert t.tar == 0.5  # 0.995 and 0.985 pass


@pytest.mark.parametrize("scores, labels, message", [
    ([0.1, 0.2], [True, True], "both same and different"),
    ([0.1, float("nan")], [True, False], "pair 1 is nan"),
    ([0.1, 0.2, 0.3], [True, False], "equal length"),
    ([0.1, 0.2], ["yes", "no"], "booleans"),
])
def test_evaluation_refuses_meaningless_input(scores, labels, message):
    with pytest.raises(EvaluationError, match=message):
        evaluate_verification(scores, labels, n_folds=2)


def test_evaluation_refuses_bad_kind_and_fold_count():
    with pytest.raises(EvaluationError, match="kind"):
        evaluate_verification([0.1, 0.9], [False, True], kind="angle")
    with pytest.raises(EvaluationError, match="n_folds must be an integer from 2 to"):
        evaluate_verification([0.1, 0.9, 0.2], [False, True, False], n_folds=10)


def test_pair_similarities_are_cosines():
    a = np.array([[1.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 2.0], [3.0, 4.0]])
    np.testing.assert_allclose(pair_similarities(a, b), [0.0, 1.0])
    with pytest.raises(EvaluationError, match="zero vector"):
        pair_similarities(np.zeros((1, 2)), b[:1])


def test_roc_plot_is_a_real_png(tmp_path):
    rng = np.random.default_rng(7)
    scores, labels = interleaved(rng.normal(2, 1, 3000), rng.normal(0, 1, 3000))
    r = evaluate_verification(scores, labels)
    out = save_roc_plot(r, tmp_path / "plots" / "roc.png", title="synthetic")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    img = cv2.imread(str(out))
    assert img.shape == (450, 600, 3)
    assert img.std() > 10  # something was drawn, not a blank canvas
