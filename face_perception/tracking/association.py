"""Matching tracks to detections: IoU cost and a gated optimal assignment (scipy)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(boxes_a, boxes_b) -> np.ndarray:
    """(len(a), len(b)) intersection over union of (x1, y1, x2, y2) boxes."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def assign(cost: np.ndarray, max_cost: float):
    """Minimum-cost one-to-one pairs with cost <= max_cost.

    Returns (pairs [(row, col)], unmatched rows, unmatched cols). Pairs over the gate are
    refused after the assignment (scipy's solver has no gate of its own).
    """
    cost = np.asarray(cost, np.float64)
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    r, c = linear_sum_assignment(cost)
    pairs = [(int(i), int(j)) for i, j in zip(r, c) if cost[i, j] <= max_cost]
    used_r = {i for i, _ in pairs}
    used_c = {j for _, j in pairs}
    return (pairs, [i for i in range(rows) if i not in used_r],
            [j for j in range(cols) if j not in used_c])
