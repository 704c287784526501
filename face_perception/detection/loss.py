"""RetinaFace multi-task loss: face/background softmax with hard negative mining, smooth-L1 boxes
and landmarks.

total = loc_weight * box loss + classification loss + landmark loss, where the box and
classification terms are divided by the number of positive priors and the landmark term by the
number of positives whose face has landmarks (as in RetinaFace training; loc_weight 2.0).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from face_perception.detection.matching import match_batch


class MultiBoxLoss(nn.Module):
    """Loss of a RetinaFace forward pass in training mode (class LOGITS, not probabilities).

    ``forward((loc, conf, landmarks), priors, targets)`` with loc (B,P,4), conf (B,P,2) logits,
    landmarks (B,P,10), priors (P,4) centre form, targets a list of dicts of tensors ``boxes``
    (N,4) point form normalised to [0,1], ``landmarks`` (N,10), ``has_landmarks`` (N,).
    Returns (total, parts) with parts ``{"loc", "conf", "landmarks"}`` as floats.
    """

    def __init__(self, variances: Sequence[float] = (0.1, 0.2), overlap_threshold: float = 0.35,
                 neg_pos_ratio: int = 3, loc_weight: float = 2.0):
        super().__init__()
        self.variances = tuple(variances)
        self.threshold = overlap_threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.loc_weight = loc_weight

    def forward(self, predictions, priors: torch.Tensor, targets: Sequence[dict]):
        loc_p, conf_p, lm_p = predictions
        if conf_p.shape[-1] != 2:
            raise ValueError(f"expected 2 class logits per prior, got shape {tuple(conf_p.shape)}")
        with torch.no_grad():
            t = match_batch(targets, priors, self.variances, self.threshold)
        pos = t.labels > 0
        num_pos = pos.sum()
        num_lm = t.landmark_mask.sum()

        lm_loss = F.smooth_l1_loss(lm_p[t.landmark_mask], t.landmarks[t.landmark_mask],
                                   reduction="sum") / num_lm.clamp(min=1)
        loc_loss = F.smooth_l1_loss(loc_p[pos], t.loc[pos], reduction="sum")

        # Hard negative mining: per image keep the neg_pos_ratio * positives background priors
        # the network is most wrong about, so the 1:1000s imbalance does not swamp the loss.
        ce = F.cross_entropy(conf_p.reshape(-1, 2), t.labels.reshape(-1), reduction="none")
        ce = ce.view_as(t.labels)
        with torch.no_grad():
            mining = ce.detach().clone()
            mining[pos] = 0.0
            _, order = mining.sort(dim=1, descending=True)
            _, rank = order.sort(dim=1)
            num_neg = (self.neg_pos_ratio * pos.sum(dim=1, keepdim=True)).clamp(
                max=pos.shape[1] - 1)
            neg = rank < num_neg
        conf_loss = ce[pos | neg].sum()

        denom = num_pos.clamp(min=1).to(ce.dtype)
        loc_loss = loc_loss / denom
        conf_loss = conf_loss / denom
        total = self.loc_weight * loc_loss + conf_loss + lm_loss
        parts = {"loc": float(loc_loss.detach()), "conf": float(conf_loss.detach()),
                 "landmarks": float(lm_loss.detach()),
                 "positives": int(num_pos)}
        return total, parts
