"""Assign ground-truth faces to prior boxes and build the regression targets of the loss.

RetinaFace matching: every prior takes the face it overlaps most; it is a positive when that IoU
is at least ``threshold`` (0.35). Each face also claims its single best prior whatever the IoU, so
small faces are never left without a positive. A face whose best prior overlaps it by less than
``min_best_overlap`` (0.2) is dropped, as no anchor can regress it. Box and landmark targets are
encoded with ``box_utils.encode`` / ``encode_landmarks`` (the inverse of the detector's decode).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from face_perception.detection.box_utils import box_iou, encode, encode_landmarks, point_form


@dataclass
class MatchTargets:
    """Per-prior targets for a batch: loc (B,P,4), labels (B,P) long in {0, 1},
    landmarks (B,P,10), landmark_mask (B,P) bool (positives whose face has landmarks)."""

    loc: torch.Tensor
    labels: torch.Tensor
    landmarks: torch.Tensor
    landmark_mask: torch.Tensor


def match_image(boxes: torch.Tensor, landmarks: torch.Tensor, has_landmarks: torch.Tensor,
                priors: torch.Tensor, variances: Sequence[float], threshold: float = 0.35,
                min_best_overlap: float = 0.2):
    """Targets for one image. boxes (N,4) point form, normalised like ``priors`` (P,4) centre form.

    Returns loc (P,4), labels (P,) long, landmarks (P,10), landmark_mask (P,) bool.
    """
    num_priors = priors.shape[0]
    device = priors.device
    loc = torch.zeros(num_priors, 4, device=device)
    lms = torch.zeros(num_priors, 10, device=device)
    labels = torch.zeros(num_priors, dtype=torch.long, device=device)
    lm_mask = torch.zeros(num_priors, dtype=torch.bool, device=device)
    if boxes.numel() == 0:
        return loc, labels, lms, lm_mask
    overlaps = box_iou(boxes, point_form(priors))  # (N, P)
    best_prior_overlap, best_prior = overlaps.max(dim=1)  # per face
    usable = best_prior_overlap >= min_best_overlap
    if not usable.any():
        return loc, labels, lms, lm_mask
    best_truth_overlap, best_truth = overlaps.max(dim=0)  # per prior
    # Force each usable face onto its best prior (later faces win ties, as in the reference).
    for j in torch.nonzero(usable).flatten().tolist():
        best_truth[best_prior[j]] = j
        best_truth_overlap[best_prior[j]] = 2.0
    positive = best_truth_overlap >= threshold
    matched_boxes = boxes[best_truth]
    loc = torch.where(positive[:, None], encode(matched_boxes, priors, variances), loc)
    labels = positive.long()
    lm_mask = positive & has_landmarks[best_truth]
    lms = torch.where(lm_mask[:, None], encode_landmarks(landmarks[best_truth], priors, variances),
                      lms)
    return loc, labels, lms, lm_mask


def match_batch(targets: Sequence[dict], priors: torch.Tensor, variances: Sequence[float],
                threshold: float = 0.35) -> MatchTargets:
    """Targets for a batch; ``targets[i]`` has tensors ``boxes``, ``landmarks``, ``has_landmarks``.

    Faces of an image that has none give an all-background row.
    """
    locs, labels, lms, masks = [], [], [], []
    for t in targets:
        out = match_image(t["boxes"].to(priors.device), t["landmarks"].to(priors.device),
                          t["has_landmarks"].to(priors.device), priors, variances, threshold)
        locs.append(out[0])
        labels.append(out[1])
        lms.append(out[2])
        masks.append(out[3])
    return MatchTargets(torch.stack(locs), torch.stack(labels), torch.stack(lms),
                        torch.stack(masks))
