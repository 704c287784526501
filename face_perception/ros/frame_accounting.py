"""Frame accounting for an image stream: what arrived, what was processed, what was lost upstream.

Pure Python (no rclpy), so the ROS nodes and the tests share one implementation. Frames lost before
they reach a node (typically in DDS transport, see docs/transport.md) are estimated from gaps in
the frames' header stamps, measured against the stream's own frame interval.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Optional

DOCS_HINT = "docs/transport.md"
NAN = float("nan")
# Before the frame interval is known, a stamp this far behind the newest one is a stream reset.
UNKNOWN_INTERVAL_RESET_NS = 1_000_000_000


class FrameAccounting:
    """Thread-safe counters for one image stream.

    Call ``on_received(stamp_ns)`` for every incoming frame, then exactly one of
    ``on_processed(latency_s)``, ``on_skipped_stale()`` or ``on_dropped_bad()`` for what the node
    did with it. ``snapshot()`` returns the counters for diagnostics; ``loss_warning()`` returns one
    rate-limited warning text when many frames go missing upstream.

    Upstream loss estimation:
      * The frame interval is the median of the recent *single-step* intervals: intervals up to
        1.5x the 10th percentile of the last ``window`` intervals. A plain median would be fooled by
        regular or heavy loss (drop every third frame and half of all intervals are double), the
        low quantile alone would be biased by jitter. Works while at least one interval in ten is
        a single step, i.e. up to about 85% random loss.
      * A forward gap of ``dt`` counts ``round(dt / interval) - 1`` missing frames. Stamp jitter up
        to a quarter interval either way therefore never counts as loss.
      * Until ``min_intervals`` intervals have been seen the gaps are kept and judged as soon as the
        interval is known, so short streams are counted from their first frame.
      * A frame older than the newest one seen (reordering) that falls into an earlier gap is taken
        back out of the missing count; a repeated stamp counts as a duplicate, not as a frame gap.
      * A jump backwards by more than ``discontinuity_intervals`` intervals (rosbag loop, camera
        restart) starts a new segment (``stamp_resets``): it is never counted as loss.
      * A pause is no loss: a forward gap longer than ``pause_s`` seconds, and longer than
        ``pause_min_intervals`` frame intervals (so a slow stream's single lost frame stays a
        loss), or longer than ``discontinuity_intervals`` intervals, is a stream that stopped
        and went on (paused playback, a camera or publisher halted). It counts in ``pauses`` and
        starts a new segment. Transport loss drops single frames or short runs: at 30 Hz a
        second without any frame is 30 consecutive losses, which even 50% random loss gives
        about once in 10^9 frames. ``on_resumed`` marks a gap the node made itself (inactive).
    """

    def __init__(self, window: int = 120, *, min_intervals: int = 8,
                 discontinuity_intervals: float = 50.0, pause_s: float = 1.0,
                 pause_min_intervals: float = 5.0, warn_ratio: float = 0.1,
                 warn_min_frames: int = 30, warn_interval_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        if window < 4:
            raise ValueError(f"window must be at least 4 frames, got {window!r}")
        if not 0.0 < warn_ratio < 1.0:
            raise ValueError(f"warn_ratio must be between 0 and 1, got {warn_ratio!r}")
        if min_intervals < 2 or min_intervals > window:
            raise ValueError(f"min_intervals must be in [2, window], got {min_intervals!r}")
        if not pause_s > 0 or not pause_min_intervals >= 2:
            raise ValueError(f"pause_s must be > 0 and pause_min_intervals >= 2, got "
                             f"{pause_s!r}, {pause_min_intervals!r}")
        self.window = int(window)
        self.min_intervals = int(min_intervals)
        self.discontinuity_intervals = float(discontinuity_intervals)
        self.pause_ns = float(pause_s) * 1e9
        self.pause_min_intervals = float(pause_min_intervals)
        self.warn_ratio = float(warn_ratio)
        self.warn_min_frames = int(warn_min_frames)
        self.warn_interval_s = float(warn_interval_s)
        self._clock = clock
        self._lock = threading.Lock()

        self._received = 0
        self._processed = 0
        self._skipped_stale = 0
        self._dropped_bad = 0
        self._duplicates = 0
        self._reordered = 0
        self._stamp_resets = 0
        self._pauses = 0
        self._resumed = False  # the node was inactive: the next gap is its own pause
        self._missing = 0

        self._newest: Optional[int] = None          # highest stamp of the current segment
        self._intervals: deque[int] = deque(maxlen=self.window)
        self._interval_ns: Optional[float] = None   # current frame-interval estimate
        self._pending: list[tuple[int, int]] = []   # gaps (lo, hi) waiting for an interval
        self._gaps: deque[list[int]] = deque(maxlen=self.window)  # [lo, hi, still missing]
        self._recent_stamps: deque[int] = deque(maxlen=self.window)
        self._recent_set: set[int] = set()
        # Per-frame history for the recent loss ratio: (received 1/0, missing count).
        self._recent: deque[tuple[int, int]] = deque(maxlen=self.window)
        self._latencies: deque[float] = deque(maxlen=self.window)
        self._last_warning: Optional[float] = None

    # ----------------------------------------------------------------- events from the node
    def on_received(self, stamp_ns: int) -> None:
        """Record an incoming frame by its header stamp in nanoseconds."""
        stamp = int(stamp_ns)
        with self._lock:
            self._received += 1
            if self._newest is None:
                self._remember(stamp)
                self._newest = stamp
                self._recent.append((1, 0))
                return
            dt = stamp - self._newest
            if self._resumed or self._is_pause(dt):
                self._pauses += 1
                self._resumed = False
                self._start_segment(stamp)
                self._recent.append((1, 0))
                return
            if self._is_discontinuity(dt):
                self._stamp_resets += 1
                self._start_segment(stamp)
                self._recent.append((1, 0))
                return
            if stamp in self._recent_set:
                self._duplicates += 1
                self._recent.append((1, 0))
                return
            if dt < 0:
                self._late_frame(stamp)
                self._remember(stamp)
                return
            self._remember(stamp)
            self._intervals.append(dt)
            self._update_interval()
            missing = self._judge_gap(self._newest, stamp)
            self._newest = stamp
            self._recent.append((1, missing))

    def on_resumed(self) -> None:
        """The node starts receiving again after it stopped listening (deactivated): the gap
        before the next frame is a pause, whatever its length, never upstream loss."""
        with self._lock:
            self._resumed = self._newest is not None

    def on_processed(self, latency_s: float) -> None:
        """A frame went through the model; ``latency_s`` from its arrival (or stamp) to output."""
        with self._lock:
            self._processed += 1
            self._latencies.append(float(latency_s))

    def on_skipped_stale(self, n: int = 1) -> None:
        """``n`` frames were replaced by newer ones before the model could take them."""
        if n < 0:
            raise ValueError(f"cannot skip a negative number of frames: {n!r}")
        with self._lock:
            self._skipped_stale += int(n)

    def on_dropped_bad(self) -> None:
        """A frame could not be used (unknown encoding, wrong size, ...)."""
        with self._lock:
            self._dropped_bad += 1

    # ----------------------------------------------------------------- reporting
    def snapshot(self) -> dict:
        """All counters as a plain dict of ints and floats.

        Ratios are fractions (0..1). ``mean_latency_ms`` is the mean over the last ``window``
        processed frames, ``median_interval_ms`` the current frame-interval estimate; both are NaN
        until known (NaN still formats with ``f"{x:.1f}"``, where None would raise).
        """
        with self._lock:
            seen = self._received - self._duplicates
            total = seen + self._missing
            recent_rx = sum(r for r, _ in self._recent)
            recent_missing = max(0, sum(m for _, m in self._recent))
            recent_total = recent_rx + recent_missing
            return {
                "received": self._received,
                "processed": self._processed,
                "skipped_stale": self._skipped_stale,
                "dropped_bad": self._dropped_bad,
                "missing_upstream": self._missing,
                "upstream_loss_ratio": self._missing / total if total else 0.0,
                "recent_upstream_loss_ratio":
                    recent_missing / recent_total if recent_total else 0.0,
                "mean_latency_ms": (1000.0 * sum(self._latencies) / len(self._latencies)
                                    if self._latencies else NAN),
                "median_interval_ms": (self._interval_ns / 1e6
                                       if self._interval_ns is not None else NAN),
                "duplicates": self._duplicates,
                "reordered": self._reordered,
                "stamp_resets": self._stamp_resets,
                "pauses": self._pauses,
            }

    def loss_warning(self) -> Optional[str]:
        """One warning text when recent upstream loss is large, else None.

        Returns a text at most once per ``warn_interval_s``; judged on the last ``window`` frames so
        a past burst does not keep warning forever.
        """
        with self._lock:
            recent_rx = sum(r for r, _ in self._recent)
            recent_missing = max(0, sum(m for _, m in self._recent))
            total = recent_rx + recent_missing
            if total < self.warn_min_frames or self._interval_ns is None:
                return None
            ratio = recent_missing / total
            if ratio < self.warn_ratio:
                return None
            now = self._clock()
            if self._last_warning is not None and now - self._last_warning < self.warn_interval_s:
                return None
            self._last_warning = now
            interval_ms = self._interval_ns / 1e6
            return (f"{100 * ratio:.0f}% of the recent frames never arrived ({recent_missing} of "
                    f"{total} missing, judged from gaps in header stamps at a {interval_ms:.1f} ms "
                    f"frame interval). Large images are typically lost in DDS transport before "
                    f"they reach this node: load the shipped Fast DDS profile in the process that "
                    f"publishes them, see {DOCS_HINT} (section 'Frames lost in transport').")

    # ----------------------------------------------------------------- internals (lock held)
    def _remember(self, stamp: int) -> None:
        if len(self._recent_stamps) == self._recent_stamps.maxlen:
            self._recent_set.discard(self._recent_stamps[0])
        self._recent_stamps.append(stamp)
        self._recent_set.add(stamp)

    def _is_discontinuity(self, dt: int) -> bool:
        """A jump backwards (forward gaps are judged by _is_pause)."""
        if self._interval_ns is None:
            # No interval yet: a jump back by more than a second is a reset; forward gaps wait in
            # _pending and are judged (as pause or loss) once the interval is known.
            return dt < -UNKNOWN_INTERVAL_RESET_NS
        return -dt > self.discontinuity_intervals * self._interval_ns

    def _pause_limit_ns(self) -> float:
        """Forward gaps longer than this are pauses (see the class docstring)."""
        interval = self._interval_ns
        return min(self.discontinuity_intervals * interval,
                   max(self.pause_ns, self.pause_min_intervals * interval))

    def _is_pause(self, dt: int) -> bool:
        return self._interval_ns is not None and dt > self._pause_limit_ns()

    def _start_segment(self, stamp: int) -> None:
        self._newest = stamp
        self._gaps.clear()
        self._pending.clear()
        self._recent_stamps.clear()
        self._recent_set.clear()
        self._remember(stamp)

    def _late_frame(self, stamp: int) -> None:
        self._reordered += 1
        for gap in self._gaps:
            if gap[0] < stamp < gap[1] and gap[2] > 0:
                gap[2] -= 1
                self._missing -= 1
                self._recent.append((1, -1))
                return
        for lo, hi in self._pending:
            if lo < stamp < hi:
                # Not judged yet: split the gap so the late frame is not counted as missing.
                self._pending.remove((lo, hi))
                self._pending += [(lo, stamp), (stamp, hi)]
                break
        self._recent.append((1, 0))

    def _update_interval(self) -> None:
        if len(self._intervals) < self.min_intervals:
            return
        ordered = sorted(self._intervals)
        q10 = ordered[(len(ordered) - 1) // 10]
        rough = _median([d for d in ordered if d <= 1.5 * q10])
        # Second pass around the rough value: the q10 cut clips the upper half of the jitter.
        # A rough value that is the mean of two distant intervals can leave that band empty;
        # keep the rough value then.
        around = [d for d in ordered if 0.5 * rough <= d <= 1.5 * rough]
        median = _median(around) if around else rough
        if median <= 0:
            return
        first = self._interval_ns is None
        self._interval_ns = float(median)
        if first and self._pending:
            pending, self._pending = self._pending, []
            late = sum(self._count_gap(lo, hi) for lo, hi in pending)
            # Charge the frames found in the early gaps to the frame that completes the estimate.
            if late:
                self._recent.append((0, late))

    def _judge_gap(self, lo: int, hi: int) -> int:
        if self._interval_ns is None:
            self._pending.append((lo, hi))
            return 0
        return self._count_gap(lo, hi)

    def _count_gap(self, lo: int, hi: int) -> int:
        if hi - lo > self._pause_limit_ns():
            # Judged late (before the interval was known): a pause, not loss.
            self._pauses += 1
            return 0
        steps = round((hi - lo) / self._interval_ns)
        missing = max(0, int(steps) - 1)
        if missing:
            self._missing += missing
            self._gaps.append([lo, hi, missing])
        return missing


def _median(ordered: list) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


