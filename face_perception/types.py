"""Typed results shared by the detector, the recognizer, the CLI and the ROS layer."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np


@dataclass
class Face:
    """One detected face in input-image pixels.

    box: (x1, y1, x2, y2) float32; score: detector confidence in [0, 1];
    landmarks: (5, 2) float32 in the order left eye, right eye, nose, left mouth corner,
    right mouth corner (image left/right, as RetinaFace and the ArcFace template use them),
    or None when the detector gave none.
    """

    box: np.ndarray
    score: float
    landmarks: Optional[np.ndarray] = None

    def __post_init__(self) -> None:
        self.box = np.asarray(self.box, dtype=np.float32).reshape(4)
        self.score = float(self.score)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def to_dict(self) -> dict:
        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": None if self.landmarks is None
            else [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks],
        }


@dataclass
class Category:
    """A recognised identity: name and confidence (cosine similarity for galleries)."""

    name: str
    confidence: float
    extra: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        # Also what print() shows: the name and a readable confidence, not 17 digits.
        extra = f", extra={self.extra!r}" if self.extra else ""
        return f"Category(name={self.name!r}, confidence={self.confidence:.4f}{extra})"
