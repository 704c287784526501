"""Box and landmark maths of RetinaFace: encode/decode against priors, IoU, NMS, box voting.

Pure functions that accept either NumPy arrays or torch tensors and return the same kind, so the
onnxruntime path decodes in NumPy (no torch import) and training code encodes targets as tensors.
Boxes in point form are (x1, y1, x2, y2); priors are in centre form (cx, cy, w, h); all normalised
to the input size unless a caller scales them. Leading batch dimensions are allowed everywhere
(``[..., k]`` indexing).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def _is_torch(x) -> bool:
    # Checked by type name so that NumPy callers never import torch.
    return type(x).__module__.startswith("torch")


def _xp(x):
    if _is_torch(x):
        import torch

        return torch
    return np


def _cat(xp, parts, axis):
    return xp.cat(parts, dim=axis) if xp is not np else np.concatenate(parts, axis=axis)


def point_form(boxes):
    """(cx, cy, w, h) -> (x1, y1, x2, y2)."""
    xp = _xp(boxes)
    return _cat(xp, [boxes[..., :2] - boxes[..., 2:] / 2, boxes[..., :2] + boxes[..., 2:] / 2], -1)


def center_size(boxes):
    """(x1, y1, x2, y2) -> (cx, cy, w, h)."""
    xp = _xp(boxes)
    return _cat(xp, [(boxes[..., 2:] + boxes[..., :2]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def encode(matched, priors, variances: Sequence[float]):
    """Regression targets for ground-truth boxes ``matched`` (point form) against ``priors``.

    Centre offsets are divided by (variance[0] * prior size); sizes become log(w / prior_w) /
    variance[1]. The exact inverse of :func:`decode`.
    """
    xp = _xp(matched)
    g_cxcy = (matched[..., :2] + matched[..., 2:]) / 2 - priors[..., :2]
    g_cxcy = g_cxcy / (variances[0] * priors[..., 2:])
    g_wh = (matched[..., 2:] - matched[..., :2]) / priors[..., 2:]
    g_wh = xp.log(g_wh) / variances[1]
    return _cat(xp, [g_cxcy, g_wh], -1)


def decode(loc, priors, variances: Sequence[float]):
    """Network box regressions ``loc`` (..., N, 4) + priors (N, 4) -> boxes in point form."""
    xp = _xp(loc)
    centers = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    sizes = priors[..., 2:] * xp.exp(loc[..., 2:] * variances[1])
    return _cat(xp, [centers - sizes / 2, centers + sizes / 2], -1)


def encode_landmarks(matched, priors, variances: Sequence[float]):
    """Regression targets for landmarks ``matched`` (..., N, 10 as x1,y1,...,x5,y5)."""
    shape = matched.shape
    pts = matched.reshape(*shape[:-1], 5, 2)
    out = (pts - priors[..., None, :2]) / (variances[0] * priors[..., None, 2:])
    return out.reshape(shape)


def decode_landmarks(pre, priors, variances: Sequence[float]):
    """Network landmark regressions (..., N, 10) + priors (N, 4) -> points (..., N, 10)."""
    shape = pre.shape
    pts = pre.reshape(*shape[:-1], 5, 2)
    out = priors[..., None, :2] + pts * variances[0] * priors[..., None, 2:]
    return out.reshape(shape)


def box_iou(a, b):
    """Pairwise IoU of point-form boxes a (N, 4) and b (M, 4) -> (N, M)."""
    if _is_torch(a):
        from torchvision.ops import box_iou as tv_box_iou

        return tv_box_iou(a, b)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes, scores, iou_threshold: float):
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    Torch tensors go through ``torchvision.ops.nms``; NumPy arrays through an equivalent NumPy
    loop (only the few boxes above the score threshold ever reach it).
    """
    if _is_torch(boxes):
        from torchvision.ops import nms as tv_nms

        return tv_nms(boxes.float(), scores.float(), float(iou_threshold))
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = np.clip(np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]), 0, None)
        h = np.clip(np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]), 0, None)
        inter = w * h
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-12)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def box_voting(boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray,
               iou_threshold: float):
    """Merge overlapping detections by score-weighted averaging (RetinaFace's "box voting").

    Each cluster (boxes overlapping the best remaining one by >= ``iou_threshold``) becomes one
    detection: box and landmarks are the score-weighted means of the cluster, score is the
    cluster's best. Used to merge test-time augmentation passes, where averaging the same face
    seen at several scales gives steadier boxes than keeping one. NumPy in, NumPy out.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    landmarks = np.asarray(landmarks, dtype=np.float32).reshape(len(boxes), -1)
    order = np.argsort(-scores, kind="stable")
    boxes, scores, landmarks = boxes[order], scores[order], landmarks[order]
    out_b, out_s, out_l = [], [], []
    remaining = np.arange(len(boxes))
    while remaining.size:
        top = remaining[0]
        iou = box_iou(boxes[top:top + 1], boxes[remaining])[0]
        members = remaining[iou >= iou_threshold]
        weights = scores[members][:, None].astype(np.float64)
        total = weights.sum()
        out_b.append((boxes[members] * weights).sum(0) / total)
        out_l.append((landmarks[members] * weights).sum(0) / total)
        out_s.append(scores[top])
        remaining = remaining[iou < iou_threshold]
    if not out_b:
        return (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                np.zeros((0, landmarks.shape[1]), np.float32))
    return (np.asarray(out_b, np.float32), np.asarray(out_s, np.float32),
            np.asarray(out_l, np.float32))
