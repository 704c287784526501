"""AP / recall of face detections on hand-made cases whose answers are worked out by hand."""
import numpy as np
import pytest

from face_perception.detection.evaluation import (
    average_precision,
    evaluate,
    evaluate_detection_dataset,
    iou_matrix,
)
from face_perception.detection.wider import WiderSample

A = [0, 0, 10, 10]
B = [20, 20, 30, 30]
C = [50, 50, 60, 60]


def test_iou_of_known_boxes():
    iou = iou_matrix([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30],
                                        [0, 0, 0, 0]])
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0, 0.0]])


def test_all_point_ap_is_area_under_precision_envelope():
    # Recall steps 0.5 (p=1) and 1.0 (p=2/3, envelope lifts nothing): 0.5*1 + 0.5*2/3.
    assert average_precision([0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]) == pytest.approx(5 / 6)
    # The envelope takes the best precision at higher recall: p=0.4 at r=0.5 is lifted to 0.8.
    assert average_precision([0.5, 1.0], [0.4, 0.8]) == pytest.approx(0.8)


def test_hit_false_alarm_hit_gives_five_sixths():
    dets = [(np.array([A, C, B], float), np.array([0.9, 0.8, 0.7]))]
    score = evaluate(dets, [np.array([A, B], float)])
    assert score.ap == pytest.approx(5 / 6)
    assert score.recall == 1.0
    assert score.precision == pytest.approx(2 / 3)
    assert score.num_faces == 2 and score.num_detections == 3


def test_perfect_detections_score_one_and_missing_ones_zero():
    gts = [np.array([A, B], float), np.array([C], float)]
    perfect = [(np.array([A, B], float), np.array([0.9, 0.8])), (np.array([C], float),
                                                                 np.array([0.7]))]
    assert evaluate(perfect, gts).ap == pytest.approx(1.0)
    empty = [(np.zeros((0, 4)), np.zeros(0)), (np.zeros((0, 4)), np.zeros(0))]
    score = evaluate(empty, gts)
    assert score.ap == 0.0 and score.recall == 0.0


def test_duplicate_detection_of_one_face_is_a_false_alarm():
    dets = [(np.array([A, [0, 0, 10, 11]], float), np.array([0.9, 0.8]))]
    score = evaluate(dets, [np.array([A, B], float)])
    assert score.recall == 0.5
    assert score.precision == 0.5
    assert score.ap == pytest.approx(0.5)


def test_overlap_below_threshold_is_a_miss():
    shifted = [[0, 0, 10, 10 * 0.49]]  # IoU 0.49 with A
    score = evaluate([(np.array(shifted), np.array([0.9]))], [np.array([A], float)])
    assert score.recall == 0.0
    score = evaluate([(np.array(shifted), np.array([0.9]))], [np.array([A], float)],
                     iou_threshold=0.45)
    assert score.recall == 1.0


def test_detection_on_ignored_face_counts_neither_way():
    dets = [(np.array([B, A], float), np.array([0.9, 0.8]))]
    score = evaluate(dets, [np.array([A, B], float)], ignore=[np.array([False, True])])
    assert score.num_faces == 1 and score.num_detections == 1
    assert score.ap == pytest.approx(1.0) and score.precision == 1.0


def test_scores_rank_across_images():
    # Image 1: false alarm at 0.95; image 2: hit at 0.5. One face in all: AP = 1/2 (p at r=1).
    dets = [(np.array([C], float), np.array([0.95])), (np.array([A], float), np.array([0.5]))]
    gts = [np.zeros((0, 4)), np.array([A], float)]
    assert evaluate(dets, gts).ap == pytest.approx(0.5)


def test_difficulty_subsets_ignore_faces_outside_them():
    sample = WiderSample("x.jpg", np.array([A, B, C], float), np.full((3, 10), -1.0),
                         np.zeros(3, bool))
    sample.subsets = {"easy": np.array([True, False, False]),
                      "hard": np.array([True, True, True])}
    dets = [(np.array([A, B], float), np.array([0.9, 0.8]))]
    out = evaluate_detection_dataset(dets, [sample])
    assert out["easy"].recall == 1.0 and out["easy"].ap == pytest.approx(1.0)
    assert out["hard"].recall == pytest.approx(2 / 3)
    assert out["all"].recall == pytest.approx(2 / 3)


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="1 images but ground truth for 2"):
        evaluate([(np.zeros((0, 4)), np.zeros(0))], [np.zeros((0, 4))] * 2)
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        evaluate([(np.zeros((3, 4)), np.zeros(2))], [np.zeros((0, 4))])


def test_detection_belongs_to_its_best_face_even_when_that_face_is_taken():
    # VOC rule: d2 overlaps the found face A most (0.82), so it is a false alarm, although it
    # also covers the free face A2 at 0.67.
    a2 = [3, 0, 13, 10]
    dets = [(np.array([A, [1, 0, 11, 10]], float), np.array([0.9, 0.8]))]
    score = evaluate(dets, [np.array([A, a2], float)])
    assert score.recall == 0.5 and score.precision == 0.5
