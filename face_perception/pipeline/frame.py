"""One frame through the pipeline: detect -> track -> identify, then anonymize and draw on demand.

``FacePipeline`` is the object every driver holds (the detector and recognizer nodes,
``face-perception bag``, ``face-perception video``); the drivers only convert messages or files to
images and faces and the ``FrameResult`` back.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from face_perception.tracking.pipeline import TrackedFace, TrackingPipeline
from face_perception.types import Category, Face


@dataclass
class FrameResult:
    """What the pipeline made of one frame.

    image: the frame (None when a driver skipped decoding an empty frame); tracked: one
    TrackedFace per face (track id, identity); identities: True when a recognizer named the
    faces (``categories`` then has one entry per face, None for unknown), False for detection
    only; anonymize: the privacy mode ``annotated()`` applies (docs/privacy.md).
    """

    image: Optional[np.ndarray]
    tracked: list
    identities: bool
    anonymize: str = "none"
    identity_mode: str = "live"  # "offline" once relabelled from whole tracks

    @property
    def faces(self) -> list[Face]:
        return [t.face for t in self.tracked]

    @property
    def track_ids(self) -> list[Optional[str]]:
        return [t.track_id for t in self.tracked]

    @property
    def categories(self) -> Optional[list[Optional[Category]]]:
        """Per face its identity (None: unknown); None altogether without a recognizer."""
        return [t.category for t in self.tracked] if self.identities else None

    @property
    def names(self) -> list[Optional[str]]:
        return [t.category.name if t.category is not None else None for t in self.tracked]

    @property
    def named(self) -> int:
        return sum(t.category is not None for t in self.tracked)

    def labels(self, unknown: str = "unknown") -> list[str]:
        return [t.label(unknown, self.identities) for t in self.tracked]

    def without_image(self) -> FrameResult:
        """The same result without its pixels (for keeping many frames until offline names)."""
        return replace(self, image=None)

    def annotated(self, unknown: str = "unknown") -> np.ndarray:
        """A copy of the frame, faces hidden as ``anonymize`` says, with boxes, landmarks and
        ``#track name confidence`` labels (the detection score without identities)."""
        from face_perception.rendering import anonymize, draw_faces

        if self.image is None:
            raise ValueError("this frame result holds no image to draw on")
        faces, cats = self.faces, self.categories
        shown = anonymize(self.image, faces, cats, self.anonymize)
        return draw_faces(shown, faces, cats, unknown, labels=self.labels(unknown))


IDENTITY_MODES = ("live", "offline")


class FacePipeline:
    """detector + tracking + recognizer + privacy mode for one stream of frames.

    detector: a face_perception Detector (None: faces always come with the frame, as in the
    recognizer node). recognizer: a Recognizer (None: detection and track ids only). tracker: a
    FaceTracker (None: tracking off, every frame judged alone). identity: the tracks' naming
    rule (tracking.IdentityConfig). anonymize: "none", "unknown" or "all".
    identity_mode: "live" (causal: a frame's name uses only what came before it; the nodes) or
    "offline" (files: each track's name is decided from all of its evidence, looking ahead, and
    ``offline_names`` writes it on every frame of the track). Both accumulate the same evidence.
    """

    def __init__(self, detector=None, recognizer=None, tracker=None, identity=None,
                 anonymize: str = "none", upstream_max_age: float = 2.0,
                 identity_mode: str = "live", evidence=None):
        if identity_mode not in IDENTITY_MODES:
            raise ValueError(f"identity_mode must be one of {', '.join(IDENTITY_MODES)}, got "
                             f"{identity_mode!r}")
        self.detector = detector
        self.anonymize = anonymize
        self.identity_mode = identity_mode
        self.tracking = TrackingPipeline(recognizer, tracker, identity, upstream_max_age,
                                         offline=identity_mode == "offline", evidence=evidence)

    # -- what the drivers read ------------------------------------------------------------
    @property
    def recognizer(self):
        return self.tracking.recognizer

    @property
    def identities(self) -> bool:
        return self.tracking.recognizer is not None

    @property
    def tracker(self):
        return self.tracking.tracker

    @property
    def embeddings(self) -> int:
        """Faces embedded so far."""
        return self.tracking.embeddings

    @property
    def passes(self) -> int:
        """Reads of the input a whole run takes: 2 offline (decide, then write), 1 live."""
        return 2 if self.identity_mode == "offline" else 1

    @property
    def active_tracks(self) -> int:
        return self.tracking.active_tracks

    @property
    def upstream(self) -> bool:
        """True while received faces are keyed by the sender's track ids."""
        return self.tracking.upstream

    def set_recognizer(self, recognizer) -> None:
        """Use another recognizer (new gallery or rule): identities start again."""
        self.tracking.set_recognizer(recognizer)

    def reset(self) -> None:
        """Forget every track (e.g. after a pause)."""
        self.tracking.reset()

    # -- one frame ------------------------------------------------------------------------
    def process(self, image: np.ndarray, stamp_ns: int, faces: Optional[Sequence[Face]] = None,
                detector=None) -> FrameResult:
        """Detect (with ``detector``, default the pipeline's, unless ``faces`` are given),
        track and identify one frame taken at ``stamp_ns``."""
        if faces is None:
            detector = detector if detector is not None else self.detector
            if detector is None:
                raise ValueError("FacePipeline has no detector: pass the frame's faces")
            faces = detector.detect(image)
        tracked = self.tracking.update(image, faces, stamp_ns)
        return FrameResult(image, tracked, self.identities, self.anonymize)

    def process_received(self, image: Optional[np.ndarray], faces: Sequence[Face],
                         stamp_ns: int, track_ids: Sequence[Optional[str]]) -> FrameResult:
        """Faces detected elsewhere, with the track ids their sender gave (None: untracked):
        its ids key the identities while it sends them, else the pipeline's tracker does."""
        tracked = self.tracking.update_received(image, faces, stamp_ns, track_ids)
        return FrameResult(image, tracked, self.identities, self.anonymize)

    def offline_names(self, results: Sequence[FrameResult]) -> list[FrameResult]:
        """Offline mode, after the last frame: ``results`` (in frame order) with every face of
        a track named by the decision on all of the track's evidence, including the frames
        before that evidence was enough; a confirmed track's id is also written on its frames
        from before the confirmation. Faces of a track that is never named are unknown."""
        if self.identity_mode != "offline":
            raise ValueError("offline_names needs identity_mode='offline'")
        confirmed = {t.key for r in results for t in r.tracked if t.track_id is not None}
        final: dict = {}
        out = []
        for r in results:
            tracked = []
            for t in r.tracked:
                key = t.key if t.key in confirmed else None
                if key is not None and key not in final:
                    final[key] = self.tracking.final_category(key) if self.identities else None
                cat = final.get(key) if key is not None else (
                    t.category if t.key is None else None)
                tracked.append(TrackedFace(t.face, key if key is not None else t.track_id,
                                           cat, t.key))
            out.append(replace(r, tracked=tracked, identity_mode="offline"))
        return out


__all__ = ["FacePipeline", "FrameResult", "TrackedFace", "IDENTITY_MODES"]
