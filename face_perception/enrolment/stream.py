"""Enrolment from a camera stream, fed by frames the recognizer processes anyway: a track's best
distinct views over its next frames, the largest face of a fresh frame, or (optionally) a
stranger's track learnt as anon_<n>. Nothing here waits: a session is told about each frame and
says when it is ready; the caller then finishes it (embedding, checks) and saves."""
from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from face_perception.enrolment.names import check_new_name
from face_perception.enrolment.views import (
    Selection,
    ViewPool,
    already_enrolled_as,
    select_views,
)
from face_perception.gallery.validation import GalleryError
from face_perception.recognition.photo_faces import largest_face
from face_perception.types import Face

# Bounds of one enrolment goal (Enroll.action): a goal outside them is refused at once.
MAX_FRAMES = 300
MAX_SAMPLES = 50
MAX_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class EnrolmentGoal:
    """One checked request: enrol ``name`` from track ``track_id`` ('' = the largest face)."""

    name: str
    track_id: str
    max_frames: int
    max_samples: int
    timeout_s: float
    allow_duplicate: bool = False

    @property
    def what(self) -> str:
        return f"track {self.track_id!r}" if self.track_id else "the largest face"


def check_goal(name: Any, track_id: Any = "", max_frames: Any = 0, max_samples: Any = 0,
               timeout_s: Any = 0.0, allow_duplicate: bool = False, *,
               defaults: Optional[dict] = None, reserved: Sequence[str] = ()) -> EnrolmentGoal:
    """A bounded goal, or ValueError saying which value is wrong. Zero values take
    ``defaults`` ("max_frames", "max_samples", "timeout_s"); ``reserved``: more names to refuse
    (the node's unknown label)."""
    defaults = defaults or {}
    try:
        name = check_new_name(name, reserved)
    except GalleryError as exc:
        raise ValueError(str(exc)) from None
    track_id = str(track_id)
    if "\x00" in track_id or len(track_id) > 64:
        raise ValueError(f"track_id must be a track id of faces/identities (at most 64 "
                         f"characters, no NUL), got {track_id[:70]!r}")
    frames = _bounded_int("max_frames", max_frames, defaults.get("max_frames", 10), MAX_FRAMES)
    samples = _bounded_int("max_samples", max_samples, defaults.get("max_samples", 5),
                           MAX_SAMPLES)
    try:
        timeout = float(timeout_s)
    except (TypeError, ValueError):
        raise ValueError(f"timeout_s must be a number of seconds, got {timeout_s!r}") from None
    if timeout == 0.0:
        timeout = float(defaults.get("timeout_s", 30.0))
    if not math.isfinite(timeout) or not 0.0 < timeout <= MAX_TIMEOUT_S:
        raise ValueError(f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}] seconds (0: the node's "
                         f"enroll_timeout), got {timeout_s!r}")
    return EnrolmentGoal(name, track_id, frames, samples, timeout, bool(allow_duplicate))


def _bounded_int(key: str, value: Any, default: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    value = int(value) or int(default)
    if not 1 <= value <= high:
        raise ValueError(f"{key} must be in 1..{high} (0: the node's default), got {value}")
    return value


@dataclass
class Frame:
    """A frame the recognizer processed: pixels, faces, tracked faces, monotonic time."""

    image: Optional[np.ndarray]
    faces: Sequence[Face]
    tracked: Sequence
    at: float


@dataclass
class Outcome:
    """How a session ended: what to enrol, or why not (``matched``: the identity the face
    already is, when refused as a duplicate)."""

    selection: Selection
    reason: str = ""
    matched: Optional[tuple] = None

    @property
    def ok(self) -> bool:
        return not self.reason


class EnrolmentSession:
    """One goal fed with processed frames. ``observe`` (the frame thread) collects gated views;
    the session is ``done`` after ``max_frames`` frames (a track), at the first usable face
    (the largest face), on ``cancel`` or once ``expire`` finds its time is up. ``finish`` then
    embeds, checks and chooses the views (no waiting anywhere)."""

    def __init__(self, goal: EnrolmentGoal, now: float):
        self.goal = goal
        self.started = now
        self.frames_seen = 0
        self.pool = ViewPool()
        self.ended = ""  # '' while collecting; else "ready", "cancelled", "expired", "aborted"
        self.why = ""  # the reason of an abort
        self._lock = threading.Lock()

    @property
    def done(self) -> bool:
        return bool(self.ended)

    @property
    def samples(self) -> int:
        """Views kept so far (at most the goal's max_samples are enrolled)."""
        return min(len(self.pool.views), self.goal.max_samples)

    def start(self, recognizer, last: Optional[Frame], max_frame_age: float, now: float) -> None:
        """The largest face may come from the last processed frame when it is at most
        ``max_frame_age`` seconds old; an older frame may show someone who has left."""
        if self.goal.track_id or last is None or now - last.at > max_frame_age:
            return
        self.observe(recognizer, last, count=False)

    def observe(self, recognizer, frame: Frame, count: bool = True) -> None:
        with self._lock:
            if self.ended:
                return
            if frame.image is not None:
                if self.goal.track_id:
                    for t in frame.tracked:
                        if t.track_id == self.goal.track_id:
                            self.pool.consider(recognizer, frame.image, t.face,
                                               f"track {self.goal.track_id}")
                elif frame.faces:
                    self.pool.consider(recognizer, frame.image, largest_face(frame.faces),
                                       "largest face")
                    if self.pool.views:
                        self.ended = "ready"
            self.frames_seen += int(count)
            if self.frames_seen >= self.goal.max_frames:
                self.ended = "ready"

    def cancel(self) -> None:
        with self._lock:
            self.ended = self.ended or "cancelled"

    def abort(self, reason: str) -> None:
        """End the session without enrolling (the node is deactivated, say), with ``reason``."""
        with self._lock:
            if not self.ended:
                self.ended, self.why = "aborted", reason

    def expire(self, now: float) -> bool:
        """End the session when its timeout has passed; True when it did so now."""
        with self._lock:
            if self.ended or now - self.started < self.goal.timeout_s:
                return False
            self.ended = "expired"
            return True

    def finish(self, recognizer) -> Outcome:
        """Embed and choose the views; refuse two people, or a face that already is another
        identity of ``recognizer``'s gallery (unless the goal allows duplicates)."""
        goal = self.goal
        if self.ended == "cancelled":
            return Outcome(Selection(), "cancelled")
        if self.ended == "aborted":
            return Outcome(Selection(), self.why)
        if self.ended == "expired" or not self.ended:
            return Outcome(Selection(), f"only {self.frames_seen} of {goal.max_frames} frames "
                                        f"arrived in {goal.timeout_s:g} s")
        if not self.pool.seen:
            where = (f"in the {self.frames_seen} frames watched (ids are those of "
                     "faces/identities)" if goal.track_id else
                     f"in {self.frames_seen} fresh frames")
            return Outcome(Selection(), f"{goal.what} was not seen {where}")
        selection = select_views(self.pool, recognizer.embedder, goal.max_samples,
                                 what=goal.what)
        if selection.reason:
            return Outcome(selection, selection.reason)
        if not goal.allow_duplicate:
            match = already_enrolled_as(recognizer.gallery, selection.embeddings, goal.name,
                                        recognizer.threshold)
            if match is not None:
                limit = recognizer.threshold
                return Outcome(selection, f"{goal.what} already matches {match[0]!r} "
                                          f"(similarity {match[1]:.3f} >= {limit:.3f}); set "
                                          "allow_duplicate to enrol it anyway", match)
        return Outcome(selection)


class UnknownLearner:
    """Learning strangers (``learn_unknown``): a confirmed track that stays unknown for
    ``after`` gated observations becomes anon_<n>, enrolled with its best distinct views."""

    def __init__(self, after: int, keep: int):
        self.after, self.keep = int(after), int(keep)
        self.tracks: dict[str, Optional[ViewPool]] = {}  # None: learnt already

    def observe(self, recognizer, image: Optional[np.ndarray],
                tracked: Sequence) -> list[Selection]:
        """The tracks ready to enrol after this frame (each once), their views chosen; a track
        whose views hold two people is never learnt."""
        ready = []
        live = set()
        for t in tracked:
            if t.track_id is None or image is None:
                continue
            live.add(t.track_id)
            if t.category is not None:  # named (perhaps already learnt): nothing to learn
                self.tracks.pop(t.track_id, None)
                continue
            if t.track_id in self.tracks and self.tracks[t.track_id] is None:
                continue
            pool = self.tracks.setdefault(t.track_id, ViewPool())
            pool.consider(recognizer, image, t.face, "learnt")
            if pool.seen - len(pool.refused) >= self.after:  # gated observations
                self.tracks[t.track_id] = None  # learnt (or refused) until the track ends
                selection = select_views(pool, recognizer.embedder, self.keep)
                if not selection.reason:
                    ready.append(selection)
        for key in [k for k in self.tracks if k not in live]:
            del self.tracks[key]
        return ready
