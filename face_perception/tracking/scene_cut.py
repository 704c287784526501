"""Scene cuts: a frame whose colour histogram differs too much from the previous frame's.

A cut (camera switch, edited video) must start new tracks; panning or zooming within one scene
changes the histogram far less than a switch to other content.
"""
from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

# Hue-saturation histogram of a small thumbnail: cheap (well under a millisecond at 640x480) and
# blind to where things are, so motion inside a scene barely moves it.
THUMB = (96, 72)
BINS = [16, 8]


def frame_signature(image_bgr: np.ndarray) -> np.ndarray:
    small = cv2.resize(image_bgr, THUMB, interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV)
    hist = cv2.calcHist([hsv], [0, 1], None, BINS, [0, 180, 0, 256])
    return cv2.normalize(hist, hist).astype(np.float32)


class SceneCutDetector:
    """``is_cut(image)``: True when this frame starts a new scene (Bhattacharyya distance of
    hue-saturation histograms above ``threshold``; 0 = identical, 1 = disjoint)."""

    def __init__(self, threshold: float = 0.5):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"scene cut threshold must be in (0, 1], got {threshold!r}")
        self.threshold = float(threshold)
        self._previous: Optional[np.ndarray] = None
        self.last_distance = 0.0

    def is_cut(self, image_bgr: np.ndarray) -> bool:
        sig = frame_signature(image_bgr)
        prev, self._previous = self._previous, sig
        if prev is None:
            return False
        self.last_distance = float(cv2.compareHist(prev, sig, cv2.HISTCMP_BHATTACHARYYA))
        return self.last_distance > self.threshold

    def reset(self) -> None:
        self._previous = None
