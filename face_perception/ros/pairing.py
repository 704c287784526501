"""Pair images with their detections by (header stamp, frame_id) in a small bounded buffer, and
the base of nodes that consume such pairs (the recognizer; any future image + detections node).

The recognizer gets the two streams separately; message_filters is not available everywhere, and
an exact-stamp match is what the detector guarantees (it copies the image header). Whatever waits
longer than ``capacity`` newer arrivals is dropped and counted as unmatched.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Hashable, Optional

from rclpy.qos import QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection2DArray

from face_perception.ros.conversions import stamp_to_ns
from face_perception.ros.frame_node import FaceNodeBase

# The detector publishes its detections reliably (depth 10); the subscription matches it.
DETECTIONS_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


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

    def stats(self) -> dict[str, int]:
        """Counters for the node's statistics and diagnostics."""
        pending_images, pending_dets = self.pending()
        return {"unmatched_images": self.unmatched_images,
                "unmatched_detections": self.unmatched_detections,
                "pending_images": pending_images, "pending_detections": pending_dets}


class PairedInputNode(FaceNodeBase):
    """A face node whose work items are an image paired with its ``faces/detections``
    (``((image msg, received_at), Detection2DArray)``): subscribes to the detections beside the
    image, pairs them in a StampPairer of ``pair_buffer_size`` (a parameter of the node's table)
    and hands each pair to the worker (newest wins). Pairs waiting when the node deactivates
    are dropped; the pairer's counters join the node's statistics."""

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self.pairer = StampPairer(self.values["pair_buffer_size"])

    def create_extra_inputs(self) -> list:
        return [self.create_subscription(Detection2DArray, "faces/detections",
                                         self._on_detections, DETECTIONS_QOS)]

    def on_image(self, msg, received_at: float) -> None:
        self._offer(self.pairer.add_image(_key(msg.header), (msg, received_at)))

    def _on_detections(self, msg) -> None:
        self._offer(self.pairer.add_detections(_key(msg.header), msg))

    def _offer(self, pair) -> None:
        if pair is not None:
            self.worker.offer(pair)

    def on_deactivate(self, state):
        result = super().on_deactivate(state)
        self.pairer.clear()
        return result

    def on_values_changed(self, changed: set[str]) -> None:
        super().on_values_changed(changed)
        if "pair_buffer_size" in changed:
            self.pairer = StampPairer(self.values["pair_buffer_size"])

    def diagnostic_values(self) -> dict[str, Any]:
        return self.pairer.stats()


def _key(header) -> tuple[int, str]:
    return stamp_to_ns(header.stamp), header.frame_id
