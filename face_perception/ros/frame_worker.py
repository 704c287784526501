"""The frame path of a face node without ROS: stride, newest-frame-wins hand-over, worker thread.

A subscription callback calls ``admit`` then ``offer``; the worker thread runs ``process`` on the
newest offered item. Every frame ends up in exactly one counter (processed, stale, bad, skipped by
rate, model error), so the node's statistics add up; tests drive it with a fake model.
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Optional

from face_perception.messages.face_fields import DetectionFieldError
from face_perception.messages.images import ImageMessageError
from face_perception.ros.latest_frame import LatestFrame

# A frame the model cannot use (encoding, size, fields): counted as dropped_bad, not a model error.
BAD_FRAME_ERRORS = (ImageMessageError, DetectionFieldError)


class FrameWorker:
    """Feeds the newest admitted frame to ``process(item)`` on its own thread.

    ``acc`` is a FrameAccounting (or a wrapper with its methods); ``stride()`` gives the current
    "process one frame in n"; ``report(exc, bad)`` is told about each failed frame (for logging)
    after it was counted. ``process`` counts a processed frame itself (``acc.on_processed``),
    before it publishes the answer, so whoever saw the answer finds it counted.
    """

    def __init__(self, process: Callable[[Any], None], acc, *,
                 stride: Callable[[], int] = lambda: 1,
                 report: Callable[[Exception, bool], None] = lambda exc, bad: None,
                 name: str = "frame_worker"):
        self._process = process
        self._acc = acc
        self._stride = stride
        self._report = report
        self._name = name
        self.slot = LatestFrame()
        self.skipped_by_rate = 0
        self.model_errors = 0
        self._phase = 0  # frames admitted since the stride last changed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    # ---- intake (subscription callbacks) --------------------------------------------------
    def admit(self, stamp_ns: int) -> bool:
        """Count an arrived frame; False when the stride skips it (counted as skipped_by_rate)."""
        self._acc.on_received(stamp_ns)
        with self._lock:
            phase, self._phase = self._phase, self._phase + 1
            if phase % max(1, int(self._stride())):
                self.skipped_by_rate += 1
                return False
        return True

    def restart_stride(self) -> None:
        """The next admitted frame is processed (called when the stride changes)."""
        with self._lock:
            self._phase = 0

    def offer(self, item: Any) -> None:
        """Hand ``item`` to the worker; an item it had not taken yet is counted as stale."""
        stale = self.slot.put(item)
        if stale:
            self._acc.on_skipped_stale(stale)

    def push(self, stamp_ns: int, item: Any) -> bool:
        """``admit`` + ``offer``: the path of a frame that needs no partner. True if offered."""
        if self.admit(stamp_ns):
            self.offer(item)
            return True
        return False

    # ---- worker thread --------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self.slot.reopen()
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the frame in hand) and drop a frame not taken yet."""
        self._stop.set()
        self.slot.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout)
        self._thread = None
        self.slot.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.slot.take()
            if item is not None:
                self.run_one(item)

    def run_one(self, item: Any) -> None:
        """Process one item; a failure is counted and reported, never raised."""
        try:
            self._process(item)
        except BAD_FRAME_ERRORS as exc:
            self._acc.on_dropped_bad()
            self._report(exc, True)
        except Exception as exc:  # noqa: BLE001 - the node must survive model failures
            with self._lock:
                self.model_errors += 1
            self._report(exc, False)
