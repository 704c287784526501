"""Multi-face tracker: Kalman-predicted boxes, ByteTrack's two-stage association, optional
re-identification by embedding after an occlusion, stable integer ids, time from frame stamps.

Per frame (``FaceTracker.update``):
0. a track unseen for more than ``max_age`` seconds of stamps ends BEFORE any matching, so after
   a pause (no frames at all) a new face in a similar box never inherits an old id;
1. confirmed tracks (seen or recently lost) <- high-score faces, by IoU with the predicted box;
2. tracks seen in the previous frame and still unmatched <- low-score faces (a face blurred or
   half hidden keeps its track instead of being dropped, ByteTrack's idea);
3. tentative tracks <- remaining high-score faces; a tentative track that misses a frame ends;
4. with an ``embed`` function: lost confirmed tracks <- remaining high-score faces whose
   embedding is close to the track's last one (a face that reappears elsewhere after occlusion);
5. a remaining face scored at least ``new_track_score`` starts a tentative track, confirmed after
   ``confirm_hits`` consecutive frames.
A scene cut (face_perception.tracking.scene_cut) or a stamp going backwards ends every track.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from face_perception.tracking.association import assign, iou_matrix
from face_perception.tracking.kalman import BoxKalman
from face_perception.tracking.scene_cut import SceneCutDetector
from face_perception.types import Face

TENTATIVE, CONFIRMED = "tentative", "confirmed"


@dataclass
class TrackerConfig:
    """Tracker settings; every time is in seconds of frame stamps."""

    high_score: float = 0.6        # faces at or above take part in stages 1 and 3
    new_track_score: float = 0.6   # a face must score this to start a track
    match_iou: float = 0.2         # least IoU with the predicted box, stages 1 and 3
    low_match_iou: float = 0.5     # least IoU for a low-score face (stage 2)
    confirm_hits: int = 3          # consecutive frames before a track is confirmed
    max_age: float = 1.0           # a track unseen this long ends
    reid_similarity: Optional[float] = None  # cosine for stage 4; None: no re-identification
    scene_cut: Optional[float] = 0.5  # Bhattacharyya distance of a cut; None: no cut detection

    def __post_init__(self):
        for name in ("high_score", "new_track_score", "match_iou", "low_match_iou"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"tracker {name} must be in [0, 1], got {value!r}")
        if int(self.confirm_hits) < 1:
            raise ValueError(f"tracker confirm_hits must be >= 1, got {self.confirm_hits!r}")
        if not float(self.max_age) > 0:
            raise ValueError(f"tracker max_age must be > 0 seconds, got {self.max_age!r}")


@dataclass(eq=False)  # a track is itself: compared by identity
class Track:
    """One followed face: id, filtered box, last detection, confirmation and timing."""

    id: int
    kalman: BoxKalman
    face: Face
    born: float
    last_seen: float
    predicted_at: float
    hits: int = 1
    state: str = TENTATIVE
    embedding: Optional[np.ndarray] = None  # last embedding of this face (for stage 4)

    @property
    def confirmed(self) -> bool:
        return self.state == CONFIRMED

    @property
    def box(self) -> np.ndarray:
        return self.kalman.box


@dataclass
class TrackUpdate:
    """What one frame did: the track of every input face (None: not tracked), tracks that ended,
    whether the frame was a scene cut, and embeddings computed for re-identification."""

    tracks: list
    ended: list = field(default_factory=list)
    cut: bool = False
    embeddings: dict = field(default_factory=dict)  # face index -> embedding


class FaceTracker:
    """Stable ids for faces across frames (see module docstring)."""

    def __init__(self, config: Optional[TrackerConfig] = None):
        self.config = config or TrackerConfig()
        self.tracks: list[Track] = []
        self._next_id = 1
        self._last_time: Optional[float] = None
        self._cuts = SceneCutDetector(self.config.scene_cut) \
            if self.config.scene_cut is not None else None
        self.cuts = 0
        self._seen_now: set[int] = set()  # ids matched in the previous frame

    @property
    def active(self) -> list[Track]:
        """Confirmed tracks (seen now or lost less than max_age ago)."""
        return [t for t in self.tracks if t.confirmed]

    def reset(self) -> list[int]:
        """End every track (ids are never reused); returns the ended ids."""
        ended = [t.id for t in self.tracks]
        self.tracks = []
        self._last_time = None
        self._seen_now = set()
        if self._cuts is not None:
            self._cuts.reset()
        return ended

    def update(self, faces: Sequence[Face], stamp_ns: int, image: Optional[np.ndarray] = None,
               embed: Optional[Callable[[list[int]], np.ndarray]] = None) -> TrackUpdate:
        """Assign ``faces`` (one frame, stamped ``stamp_ns``) to tracks.

        image: the frame, for scene-cut detection (optional). embed: ``embed(face indices) ->
        (n, D) unit embeddings``, called only when a lost track could be re-identified.
        """
        cfg = self.config
        now = int(stamp_ns) * 1e-9
        ended: list[int] = []
        cut = self._cuts is not None and image is not None and self._cuts.is_cut(image)
        if cut or (self._last_time is not None and now < self._last_time):
            ended += self.reset()
            cut = True
            if image is not None and self._cuts is not None:
                self._cuts.is_cut(image)  # the new scene's first frame is the reference
        self.cuts += int(cut)
        self._last_time = now
        # Expiry first: a track's age is judged at this frame's stamp, whatever came between
        # (frames without it, or no frames at all during a pause).
        expired = [t for t in self.tracks if now - t.last_seen > cfg.max_age]
        ended += [t.id for t in expired]
        self.tracks = [t for t in self.tracks if t not in expired]
        self._seen_now -= {t.id for t in expired}
        for t in self.tracks:
            t.kalman.predict(now - t.predicted_at)
            t.predicted_at = now
        faces = list(faces)
        scores = np.array([f.score for f in faces])
        high = [i for i in range(len(faces)) if scores[i] >= cfg.high_score]
        low = [i for i in range(len(faces)) if scores[i] < cfg.high_score]
        out: list[Optional[Track]] = [None] * len(faces)

        def match(tracks, dets, min_iou):
            cost = 1.0 - iou_matrix([t.box for t in tracks], [faces[i].box for i in dets])
            pairs, rest_t, rest_d = assign(cost, 1.0 - min_iou)
            for ti, di in pairs:
                self._hit(tracks[ti], faces[dets[di]], now)
                out[dets[di]] = tracks[ti]
            return [tracks[i] for i in rest_t], [dets[i] for i in rest_d]

        confirmed = [t for t in self.tracks if t.confirmed]
        tentative = [t for t in self.tracks if not t.confirmed]
        just_seen = self._last_seen_frame(confirmed)
        rest_conf, high = match(confirmed, high, cfg.match_iou)                     # stage 1
        recent = [t for t in rest_conf if t.id in just_seen]
        _, low = match(recent, low, cfg.low_match_iou)                              # stage 2
        rest_conf = [t for t in rest_conf if not any(o is t for o in out)]
        rest_tent, high = match(tentative, high, cfg.match_iou)                     # stage 3
        embeddings: dict = {}
        if embed is not None and cfg.reid_similarity is not None and high:          # stage 4
            lost = [t for t in rest_conf if t.embedding is not None]
            if lost:
                vecs = np.asarray(embed(high), np.float32)
                embeddings = dict(zip(high, vecs))
                sims = vecs @ np.stack([t.embedding for t in lost]).T
                pairs, _, _ = assign(1.0 - sims.T, 1.0 - cfg.reid_similarity)
                taken = set()
                for ti, di in pairs:
                    self._hit(lost[ti], faces[high[di]], now, reset_box=True)
                    out[high[di]] = lost[ti]
                    taken.add(high[di])
                high = [i for i in high if i not in taken]
        for t in rest_tent:  # a tentative track must be seen in consecutive frames
            ended.append(t.id)
        self.tracks = [t for t in self.tracks if t not in rest_tent]
        for i in high:                                                              # stage 5
            if faces[i].score >= cfg.new_track_score:
                track = Track(self._next_id, BoxKalman(faces[i].box), faces[i], now, now, now)
                self._next_id += 1
                if cfg.confirm_hits <= 1:
                    track.state = CONFIRMED
                self.tracks.append(track)
                out[i] = track
        self._seen_now = {t.id for t in out if t is not None}
        return TrackUpdate(out, ended, cut, embeddings)

    def _last_seen_frame(self, tracks: list[Track]) -> set[int]:
        return {t.id for t in tracks if t.id in self._seen_now}

    def _hit(self, track: Track, face: Face, now: float, reset_box: bool = False) -> None:
        if reset_box:  # reappeared elsewhere: the old motion says nothing about the new place
            track.kalman = BoxKalman(face.box)
        else:
            track.kalman.update(face.box)
        track.face = face
        track.hits += 1
        track.last_seen = now
        if track.state == TENTATIVE and track.hits >= self.config.confirm_hits:
            track.state = CONFIRMED
