"""Enrolment from a video clip or a bag's image topic: detect and track faces over the clip,
take the main track (seen in most frames; larger faces break ties), refuse it when it holds two
people, and keep its best distinct views (enrolment/views.py), each with its
quality; ``enrol_clip_into_file`` writes them to a gallery file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional

import numpy as np

from face_perception.enrolment.gallery_file import SavedGallery, save_gallery_file
from face_perception.enrolment.names import check_new_name
from face_perception.enrolment.views import (
    Selection,
    ViewPool,
    already_enrolled_as,
    select_views,
)
from face_perception.recognition.recognizer import open_gallery_file


@dataclass
class ClipEnrolment:
    """What one clip gave: frames read, tracks found, the main track and the views chosen from
    it (or why nothing can be enrolled)."""

    frames: int = 0
    tracks: int = 0
    main_track: Optional[str] = None
    track_frames: int = 0  # frames the main track was seen in
    selection: Selection = field(default_factory=Selection)
    reason: str = ""
    matched: Optional[tuple] = None  # (identity, similarity) when refused as a duplicate

    @property
    def ok(self) -> bool:
        return not self.reason


@dataclass
class _Track:
    pool: ViewPool
    frames: int = 0
    area: float = 0.0


def video_frames(path) -> Iterator[tuple[int, np.ndarray]]:
    """(stamp ns, BGR frame) of a video file, stamped by frame index and frame rate."""
    import cv2

    if not Path(path).is_file():
        raise FileNotFoundError(f"video file not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot open video {path} (not a video OpenCV can read)")
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 1.0 <= fps <= 1000.0 else 30.0
    try:
        index = 0
        while True:
            ok, image = cap.read()
            if not ok:
                break
            yield int(round(index * 1e9 / fps)), image
            index += 1
    finally:
        cap.release()


def bag_frames(path, topic: str) -> Iterator[tuple[int, np.ndarray]]:
    """(header stamp ns, BGR frame) of a bag's image topic (raw or compressed); unreadable
    frames are skipped (a clip for enrolment needs no complete record)."""
    from face_perception.bag import rosbag_io
    from face_perception.messages.images import ImageMessageError
    from face_perception.messages.stamps import stamp_to_ns

    for record in rosbag_io.read_images(path, topic):
        try:
            image = rosbag_io.decode_image(record)
        except (ImageMessageError, ValueError):
            continue
        yield stamp_to_ns(record.msg.header.stamp), image


def enrol_from_frames(frames: Iterable[tuple[int, np.ndarray]], detector, embedder, name: str,
                      max_views: int = 5, gallery=None, threshold: Optional[float] = None,
                      allow_duplicate: bool = False, tracker=None) -> ClipEnrolment:
    """Choose what to enrol for ``name`` from a clip. ``gallery`` (when given) is checked for
    another identity the face already is, at the open-set ``threshold`` (default: the model's
    open-set rule); nothing is written here."""
    from face_perception.recognition import Recognizer
    from face_perception.tracking import FaceTracker, TrackingPipeline

    if max_views < 1:
        raise ValueError(f"max_views must be >= 1, got {max_views}")
    aligner = Recognizer(embedder, None, detector=detector)  # landmarks and chips only
    pipeline = TrackingPipeline(None, tracker if tracker is not None else FaceTracker())
    tracks: dict[str, _Track] = {}
    out = ClipEnrolment()
    for stamp, image in frames:
        for t in pipeline.update(image, detector.detect(image), stamp):
            if t.track_id is None:
                continue
            track = tracks.setdefault(t.track_id, _Track(ViewPool()))
            track.frames += 1
            track.area += float(t.face.area)
            track.pool.consider(aligner, image, t.face, f"frame {out.frames}")
        out.frames += 1
    out.tracks = len(tracks)
    if out.frames == 0:
        out.reason = "no frame could be read"
        return out
    if not tracks:
        out.reason = f"no face was tracked in {out.frames} frames"
        return out
    out.main_track, main = max(tracks.items(), key=lambda kv: (kv[1].frames, kv[1].area))
    out.track_frames = main.frames
    out.selection = select_views(main.pool, embedder, max_views,
                                 what=f"the main track ({main.frames} frames)")
    out.reason = out.selection.reason
    if out.ok and gallery is not None and not allow_duplicate:
        if threshold is None:
            from face_perception.open_set import resolve_rule

            threshold = resolve_rule(embedder.meta, gallery)[0].threshold
        out.matched = already_enrolled_as(gallery, out.selection.embeddings, name, threshold)
        if out.matched is not None:
            out.reason = (f"the face already matches {out.matched[0]!r} (similarity "
                          f"{out.matched[1]:.3f} >= {threshold:.3f}); use --allow-duplicate "
                          "to enrol it anyway")
    return out


@dataclass
class ClipFileEnrolment:
    """What ``enrol_clip_into_file`` did: the clip's enrolment and the gallery file as saved
    (None when refused: nothing was written)."""

    clip: str
    name: str
    model: str
    result: ClipEnrolment
    saved: Optional[SavedGallery] = None

    def to_dict(self) -> dict:
        """The summary ``face-perception enroll --video/--bag --json`` prints."""
        r, sel = self.result, self.result.selection
        out = {"clip": self.clip, "model": self.model, "name": self.name, "frames": r.frames,
               "tracks": r.tracks, "main_track": r.main_track, "track_frames": r.track_frames,
               "candidates": sel.candidates, "enrolled": 0, "qualities": [], "sources": [],
               "refused": r.reason or None, "matched": list(r.matched) if r.matched else None}
        if self.saved is not None:
            saved = self.saved.to_dict()
            out.update(gallery=saved.pop("gallery"), enrolled=len(sel.views),
                       qualities=[round(float(q), 4) for q in sel.qualities],
                       sources=sel.sources, **saved)
        return out


def enrol_clip_into_file(path, clip, detector, embedder, name: str, topic: Optional[str] = None,
                         max_views: int = 5, replace: bool = False,
                         allow_duplicate: bool = False) -> ClipFileEnrolment:
    """Enrol ``name`` from a video file ``clip`` (or, with ``topic``, that image topic of the
    bag ``clip``) into the gallery file at ``path`` (created when missing; one of another model
    is refused): the main track's best distinct views, each stored with its quality and the
    clip's file name and frame as source. ``replace`` drops the identity's samples first.
    Nothing is written when ``enrol_from_frames`` refuses (two people, already someone else
    unless ``allow_duplicate``, no usable view)."""
    name = check_new_name(name)
    gallery = open_gallery_file(path, embedder.meta, create=True)
    if replace and name in gallery:
        gallery.remove(name)
    frames = video_frames(clip) if topic is None else bag_frames(clip, topic)
    result = enrol_from_frames(frames, detector, embedder, name, max_views=max_views,
                               gallery=gallery, allow_duplicate=allow_duplicate)
    out = ClipFileEnrolment(str(clip), name, embedder.meta.name, result)
    if result.ok:
        sel = result.selection
        gallery.add(name, sel.embeddings, sources=[f"{Path(clip).name} {s}" for s in sel.sources],
                    qualities=sel.qualities)
        out.saved = save_gallery_file(gallery, path, embedder.meta)
    return out
