"""Enrolment from a camera stream: a track's best faces over its next frames, the largest face
of one frame, or (optionally) a stranger's track, through the enrolment quality gate."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from face_perception.gallery import Gallery, load_or_create
from face_perception.gallery.validation import GalleryError, check_name
from face_perception.recognition.enrollment import largest_face
from face_perception.recognition.face_quality import assess_face, quality_score
from face_perception.types import Face

ANON_PREFIX = "anon_"


@dataclass
class _View:
    quality: float
    chip: np.ndarray


def _gated_view(recognizer, image: np.ndarray, face: Face) -> tuple[Optional[_View], str]:
    """The aligned chip of ``face`` with its quality score, or None and the reason the
    enrolment gate (face_quality.assess_face) refuses it."""
    ((landmarks, _source),) = recognizer.complete_landmarks(image, [face])
    chip = recognizer.embedder.align(image, landmarks)
    verdict = assess_face(landmarks, chip)
    if not verdict.ok:
        return None, "; ".join(verdict.reasons)
    return _View(quality_score(image, face), chip), ""


@dataclass
class BestViews:
    """The ``keep`` best-quality gated views of one face seen over several frames."""

    keep: int
    views: list = field(default_factory=list)
    refused: list = field(default_factory=list)  # reasons of views the gate refused
    seen: int = 0  # frames in which the face appeared

    def consider(self, recognizer, image: np.ndarray, face: Face) -> None:
        self.seen += 1
        view, why = _gated_view(recognizer, image, face)
        if view is None:
            self.refused.append(why)
            return
        self.views.append(view)
        self.views.sort(key=lambda v: -v.quality)
        del self.views[self.keep:]

    def embeddings(self, recognizer) -> np.ndarray:
        chips = np.stack([v.chip for v in self.views])
        return np.asarray(recognizer.embedder.embed_chips(chips), np.float32)


class TrackEnrolment:
    """``~/enroll`` for a track: watch the next ``frames`` processed frames; ``done`` is set
    after the last one (the caller then enrols ``best.embeddings``)."""

    def __init__(self, name: str, track_id: str, frames: int, max_samples: int):
        check_name(name)
        if frames < 1 or max_samples < 1:
            raise ValueError(f"frames and max_samples must be >= 1, got {frames}, {max_samples}")
        self.name, self.track_id = name, str(track_id)
        self.frames_left = int(frames)
        self.frames = int(frames)
        self.best = BestViews(int(max_samples))
        self.done = threading.Event()

    def observe(self, recognizer, image: Optional[np.ndarray], tracked: Sequence) -> None:
        """One processed frame (TrackedFace list); counts even when the track is absent."""
        if self.done.is_set():
            return
        for t in tracked:
            if t.track_id == self.track_id and image is not None:
                self.best.consider(recognizer, image, t.face)
        self.frames_left -= 1
        if self.frames_left <= 0:
            self.done.set()

    def outcome(self) -> str:
        """Why nothing can be enrolled ('' when there are views to enrol)."""
        if self.best.views:
            return ""
        if not self.best.seen:
            return (f"track {self.track_id!r} was not seen in the {self.frames} frames watched "
                    "(ids are those of faces/identities)")
        return (f"track {self.track_id!r}: all {self.best.seen} faces refused by the quality "
                f"gate ({self.best.refused[-1]})")


def largest_face_view(recognizer, image: Optional[np.ndarray],
                      faces: Sequence[Face]) -> tuple[Optional[BestViews], str]:
    """``~/enroll`` without a track: the largest face of a frame, gated; (views, '') or
    (None, reason)."""
    if image is None or not faces:
        return None, "no face in the last processed frame"
    best = BestViews(1)
    best.consider(recognizer, image, largest_face(faces))
    if not best.views:
        return None, f"the largest face was refused by the quality gate ({best.refused[0]})"
    return best, ""


class UnknownLearner:
    """Learning strangers (``learn_unknown``): a confirmed track that stays unknown for
    ``after`` gated observations becomes ``anon_<n>``, enrolled with its best views."""

    def __init__(self, after: int, keep: int):
        self.after, self.keep = int(after), int(keep)
        self.tracks: dict[str, BestViews] = {}

    def observe(self, recognizer, image: Optional[np.ndarray],
                tracked: Sequence) -> list[BestViews]:
        """The tracks ready to enrol after this frame (each once)."""
        ready = []
        live = set()
        for t in tracked:
            if t.track_id is None or image is None:
                continue
            live.add(t.track_id)
            if t.category is not None:  # named (perhaps already learnt): nothing to learn
                self.tracks.pop(t.track_id, None)
                continue
            best = self.tracks.setdefault(t.track_id, BestViews(self.keep))
            if best.seen is None:  # enrolled already
                continue
            best.consider(recognizer, image, t.face)
            if len(best.views) and best.seen - len(best.refused) >= self.after:
                ready.append(best)
        for best in ready:
            best.seen = None  # marks the track as learnt until it ends
        for key in [k for k in self.tracks if k not in live]:
            del self.tracks[key]
        return ready


def next_anonymous_name(names: Sequence[str]) -> str:
    """anon_<n> with n one more than the largest anonymous number in ``names``."""
    numbers = [int(m.group(1)) for n in names
               if (m := re.fullmatch(re.escape(ANON_PREFIX) + r"(\d+)", n))]
    return f"{ANON_PREFIX}{max(numbers, default=-1) + 1}"


def enrol_into_file(path, model_id: str, embedding_size: int, name: Optional[str],
                    embeddings: np.ndarray, source: str) -> tuple[str, int]:
    """Add ``embeddings`` to ``name`` (None: the next anon_<n>) in the gallery file at
    ``path`` (created when missing), saved as a segment; (name, its sample count)."""
    gallery = load_or_create(Path(path).expanduser(), model_id, embedding_size)
    if name is None:
        name = next_anonymous_name(gallery.names)
    count = gallery.add(name, embeddings, sources=[source] * len(embeddings))
    gallery.save(Path(path).expanduser())
    return name, count


def forget_in_file(path, name: str, compact: bool) -> int:
    """Remove ``name`` from the gallery file at ``path``; the samples it had. ``compact``
    rewrites the arrays so that the person's embeddings are physically gone."""
    index = Gallery.index_path(Path(path).expanduser())
    if not index.is_file():
        raise GalleryError(f"gallery {path} not found")
    gallery = Gallery.load(index)
    count = gallery.count(name)  # GalleryError naming the name when absent
    gallery.remove(name)
    gallery.save(index, compact=compact)
    return count
