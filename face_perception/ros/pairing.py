"""Pair images with their detections by (header stamp, frame_id) in a small bounded buffer.

The recognizer gets the two streams separately; message_filters is not available everywhere, and
an exact-stamp match is what the detector guarantees (it copies the image header). Whatever waits
longer than ``capacity`` newer arrivals is dropped and counted as unmatched.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable, Optional


class StampPairer:
    """Holds at most ``capacity`` unmatched images and ``capacity`` unmatched detections."""

    def __init__(self, capacity: int = 10):
        if capacity < 1:
            raise ValueError(f"pair buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._images: OrderedDict[Hashable, Any] = OrderedDict()
        self._dets: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.unmatched_images = 0
        self.unmatched_detections = 0
        self.matched = 0

    def add_image(self, key: Hashable, image: Any) -> Optional[tuple[Any, Any]]:
        """Offer an image; returns (image, detections) when its detections already arrived."""
        return self._add(key, image, mine=self._images, other=self._dets, image_first=True)

    def add_detections(self, key: Hashable, dets: Any) -> Optional[tuple[Any, Any]]:
        """Offer detections; returns (image, detections) when their image already arrived."""
        return self._add(key, dets, mine=self._dets, other=self._images, image_first=False)

    def _add(self, key, value, mine, other, image_first):
        with self._lock:
            if key in other:
                partner = other.pop(key)
                self.matched += 1
                return (value, partner) if image_first else (partner, value)
            mine[key] = value
            mine.move_to_end(key)
            while len(mine) > self.capacity:
                mine.popitem(last=False)
                if image_first:
                    self.unmatched_images += 1
                else:
                    self.unmatched_detections += 1
            return None

    def pending(self) -> tuple[int, int]:
        with self._lock:
            return len(self._images), len(self._dets)

    def clear(self) -> None:
        with self._lock:
            self._images.clear()
            self._dets.clear()
