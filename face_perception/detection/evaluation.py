"""Detection accuracy: average precision at an IoU threshold and recall, in plain numpy.

AP is the VOC (2010+) all-point interpolated area under the precision/recall curve. Matching
follows VOC: in descending score order each detection belongs to the ground-truth box it
overlaps most; at IoU >= the threshold it is a hit if that face is still free and a false alarm
if the face was already found; a detection whose box is an *ignored* face (WIDER ``invalid``
faces, or faces outside the difficulty being scored) counts neither way, as VOC's "difficult"
objects and the WIDER toolkit's ignored faces.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N,4) with every box in ``b`` (M,4), x1y1x2y2 -> (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP: area under the precision envelope (VOC 2010+)."""
    r = np.concatenate([[0.0], np.asarray(recall, np.float64), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, np.float64), [0.0]])
    # Precision envelope: at each recall, the best precision reachable at that recall or beyond.
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@dataclass
class DetectionScore:
    """AP and recall of one evaluation (overall or one difficulty)."""

    ap: float
    recall: float          # fraction of counted faces found by any detection (IoU >= threshold)
    precision: float       # precision over all detections given (at the lowest score)
    num_faces: int         # counted (non-ignored) ground-truth faces
    num_detections: int    # detections that were hits or false alarms (ignored ones excluded)
    recall_curve: np.ndarray
    precision_curve: np.ndarray

    def as_dict(self) -> dict:
        return {"ap": self.ap, "recall": self.recall, "precision": self.precision,
                "num_faces": self.num_faces, "num_detections": self.num_detections}


def evaluate(detections: Sequence[tuple[np.ndarray, np.ndarray]],
             ground_truth: Sequence[np.ndarray],
             ignore: Optional[Sequence[np.ndarray]] = None,
             iou_threshold: float = 0.5) -> DetectionScore:
    """Score detections of many images against their ground truth.

    detections[i] = (boxes (K,4), scores (K,)); ground_truth[i] = boxes (N,4) x1y1x2y2;
    ignore[i] = (N,) bool, faces that do not count (a detection on one is neither TP nor FP).
    """
    if len(detections) != len(ground_truth):
        raise ValueError(f"detections for {len(detections)} images but ground truth for "
                         f"{len(ground_truth)}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    all_scores, all_labels = [], []  # label 1 = TP, 0 = FP, -1 = ignored detection
    num_faces = 0
    for i, ((boxes, scores), gt) in enumerate(zip(detections, ground_truth)):
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        if len(boxes) != len(scores):
            raise ValueError(f"image {i}: {len(boxes)} boxes but {len(scores)} scores")
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        ign = (np.zeros(len(gt), bool) if ignore is None
               else np.asarray(ignore[i], bool).reshape(len(gt)))
        num_faces += int((~ign).sum())
        all_scores.append(scores)
        all_labels.append(_match_image(boxes, scores, gt, ign, iou_threshold))
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    labels = np.concatenate(all_labels) if all_labels else np.zeros(0, np.int64)
    counted = labels >= 0
    scores, labels = scores[counted], labels[counted]
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    tp = np.cumsum(labels == 1)
    fp = np.cumsum(labels == 0)
    recall = tp / num_faces if num_faces else np.zeros(len(tp))
    precision = tp / np.maximum(tp + fp, 1)
    ap = average_precision(recall, precision) if num_faces else 0.0
    return DetectionScore(ap=ap,
                          recall=float(recall[-1]) if len(recall) else 0.0,
                          precision=float(precision[-1]) if len(precision) else 0.0,
                          num_faces=num_faces, num_detections=int(len(labels)),
                          recall_curve=recall, precision_curve=precision)


def _match_image(boxes: np.ndarray, scores: np.ndarray, gt: np.ndarray, ignore: np.ndarray,
                 iou_threshold: float) -> np.ndarray:
    labels = np.zeros(len(boxes), np.int64)
    if not len(boxes):
        return labels
    if not len(gt):
        return labels  # all false alarms
    iou = iou_matrix(boxes, gt)
    taken = np.zeros(len(gt), bool)
    for d in np.argsort(-scores, kind="stable"):
        # VOC rule: the detection belongs to the face it overlaps most, taken or not.
        j = int(np.argmax(iou[d]))
        if iou[d, j] < iou_threshold:
            continue  # false alarm
        if ignore[j]:
            labels[d] = -1
        elif not taken[j]:
            taken[j] = True
            labels[d] = 1
        # else: a second detection of a found face is a false alarm
    return labels


def evaluate_detection_dataset(detections: Sequence[tuple[np.ndarray, np.ndarray]],
                               samples: Sequence, iou_threshold: float = 0.5) -> dict:
    """Face detection scores on WIDER-style ``samples``: overall score plus one per difficulty
    the samples carry masks for.

    ``samples`` are WiderSample-like objects (``boxes``, ``ignore``, ``subsets``). Returns
    ``{"all": DetectionScore, "easy": ..., ...}``.
    """
    gts = [s.boxes for s in samples]
    ignores = [s.ignore for s in samples]
    out = {"all": evaluate(detections, gts, ignores, iou_threshold)}
    difficulties = set.intersection(*(set(s.subsets) for s in samples)) if samples else set()
    for name in sorted(difficulties):
        # Faces outside the difficulty are ignored, not misses (WIDER toolkit convention).
        ign = [s.ignore | ~s.subsets[name] for s in samples]
        out[name] = evaluate(detections, gts, ign, iou_threshold)
    return out


def evaluate_detector(detector, samples: Sequence, iou_threshold: float = 0.5) -> dict:
    """Run ``detector`` (any Detector backbone: RetinaFace or YuNet) on WIDER-style ``samples``
    (``image_path``, ``boxes``, ``ignore``, ``subsets``) and score it with
    :func:`evaluate_detection_dataset`: the same AP code for every detector."""
    from face_perception.imageio import read_image_bgr

    detections = []
    for sample in samples:
        faces = detector.detect(read_image_bgr(sample.image_path))
        detections.append((np.array([f.box for f in faces], np.float32).reshape(-1, 4),
                           np.array([f.score for f in faces], np.float32)))
    return evaluate_detection_dataset(detections, samples, iou_threshold)
