"""Tracking plus per-track identity for one stream of frames: the middle step of
face_perception.pipeline.FacePipeline, which the nodes, ``bag`` and ``video`` all use.

Three ways to key identities, chosen per frame:
- upstream ids (``track_ids`` given, e.g. Detection2D.id from another tracker): kept as they are;
- our own ``FaceTracker`` (default): ids of confirmed tracks; a tentative face has none yet;
- no tracker (tracking off): every frame judged alone, as ``Recognizer.identify`` does.
``update_received`` picks between the first two for faces received from another node (the
recognizer node): upstream ids while the sender tracks, our tracker while it gives none.
``offline=True`` keeps every view of every track so that ``final_category`` can name a track
from all of its evidence (FacePipeline's offline identity mode, for files).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Sequence

import numpy as np

from face_perception.open_set import OpenSetRule
from face_perception.recognition.face_quality import quality_score
from face_perception.recognition.open_set_evidence import EvidenceModel, evidence_model_for
from face_perception.tracking.identity import IdentityConfig, TrackIdentities
from face_perception.tracking.tracker import FaceTracker
from face_perception.types import Category, Face


@dataclass
class TrackedFace:
    """One face of a frame: its track id (None: untracked or not confirmed yet) and identity."""

    face: Face
    track_id: Optional[str] = None
    category: Optional[Category] = None
    key: Optional[str] = None  # the track's id even before it is confirmed (offline naming)

    def label(self, unknown: str = "unknown", identities: bool = True) -> str:
        """Drawn text: ``#id name confidence`` (or the detector score without identities)."""
        prefix = f"#{self.track_id} " if self.track_id is not None else ""
        if not identities:
            return f"{prefix}{self.face.score:.2f}"
        if self.category is None:
            return f"{prefix}{unknown}"
        return f"{prefix}{self.category.name} {self.category.confidence:.2f}"

    def to_dict(self) -> dict:
        """JSON-ready: the face's box/score/landmarks, track id, name (None: unknown) and the
        track's confidence."""
        cat = self.category
        return {**self.face.to_dict(), "track_id": self.track_id,
                "name": cat.name if cat is not None else None,
                "confidence": round(float(cat.confidence), 4) if cat is not None else None}


def rule_of(recognizer) -> OpenSetRule:
    """The recognizer's open-set rule (its ``rule`` when it has one, else its threshold)."""
    rule = getattr(recognizer, "rule", None)
    if isinstance(rule, OpenSetRule):
        return rule
    return OpenSetRule(float(recognizer.threshold), float(getattr(recognizer, "margin", 0.0)))


class TrackingPipeline:
    """Faces of successive frames -> TrackedFace lists.

    recognizer: a face_perception Recognizer (None: ids only, no identities). tracker: a
    FaceTracker (None: tracking off). A tracker without ``reid_similarity`` gets the
    recognizer's threshold, so a face reappearing after an occlusion can keep its id.
    upstream_max_age: seconds after which an upstream id not seen again is forgotten.
    """

    def __init__(self, recognizer=None, tracker: Optional[FaceTracker] = None,
                 identity: Optional[IdentityConfig] = None, upstream_max_age: float = 2.0,
                 offline: bool = False, evidence: Optional[EvidenceModel] = None):
        self.tracker = tracker
        self.offline = bool(offline)  # keep every observation for final() decisions
        identity = identity or IdentityConfig()
        if self.offline:
            # A file has no frame deadline: every track is embedded at the short period all
            # along, named or not, with no back-off, so that the whole-track decision sees a
            # change of person inside a track (a tracker's id switch) instead of a name carried
            # over from its first second.
            identity = replace(identity, embed_period=min(identity.embed_period,
                                                          identity.unsure_period), backoff=1.0)
        self.identity_config = identity
        self.evidence = evidence  # None: the gallery's calibrated model, else the model's
        self.upstream_max_age = float(upstream_max_age)
        self.recognizer = None
        self.identities: Optional[TrackIdentities] = None
        self.embeddings = 0  # faces embedded so far (the cost tracking saves)
        self.upstream = False  # update_received: True while the sender's ids key identities
        self._upstream_seen: dict[str, float] = {}  # upstream id -> last stamp (seconds)
        self._upstream_at: Optional[float] = None  # last stamp that carried an upstream id
        self.set_recognizer(recognizer)

    def set_recognizer(self, recognizer) -> None:
        """Use another recognizer (new gallery or threshold): identities start again."""
        if recognizer is self.recognizer and self.identities is not None:
            return
        self.recognizer = recognizer
        self.identities = None
        if recognizer is not None:
            rule = rule_of(recognizer)
            evidence = self.evidence or evidence_model_for(
                getattr(recognizer, "meta", None), getattr(recognizer, "gallery", None), rule)
            self.identities = TrackIdentities(rule, self.identity_config, evidence,
                                              keep_history=self.offline)
        if self.tracker is not None and recognizer is not None \
                and self.tracker.config.reid_similarity is None:
            self.tracker.config.reid_similarity = float(recognizer.threshold)

    @property
    def knows_people(self) -> bool:
        rec = self.recognizer
        return rec is not None and rec.gallery is not None and len(rec.gallery) > 0

    @property
    def active_tracks(self) -> int:
        """Confirmed tracks of our tracker, or upstream ids currently remembered."""
        if self.upstream:
            return len(self._upstream_seen)
        if self.tracker is not None:
            return len(self.tracker.active)
        return len(self.identities.tracks) if self.identities is not None else 0

    def reset(self) -> None:
        if self.tracker is not None:
            self.tracker.reset()
        if self.identities is not None:
            self.identities.reset()
        self._upstream_seen.clear()

    def update_received(self, image: Optional[np.ndarray], faces: Sequence[Face], stamp_ns: int,
                        ids: Sequence[Optional[str]]) -> list[TrackedFace]:
        """Faces from another node with the ids it sent (None: untracked).

        While the sender tracks (some face had an id within ``upstream_max_age``), its ids key
        the identities and a face without one is not tracked yet (unknown); a sender that gives
        no ids gets our tracker. Switching between the two starts identities again (the keys
        differ). Without a tracker (tracking off) every frame is judged alone and the received
        ids are handed back unchanged.
        """
        ids = [i if i not in (None, "") else None for i in ids]
        if len(ids) != len(faces):
            raise ValueError(f"{len(faces)} faces but {len(ids)} ids")
        if self.tracker is None:
            out = self._untracked(image, faces)
            for tracked, key in zip(out, ids):
                tracked.track_id = key
            return out
        now = int(stamp_ns) * 1e-9
        if any(k is not None for k in ids):
            self._upstream_at = now
        at = self._upstream_at
        upstream = at is not None and 0.0 <= now - at <= self.upstream_max_age
        if upstream != self.upstream:
            self.reset()
            self.upstream = upstream
        if not upstream:
            return self.update(image, faces, stamp_ns)
        for key in ids:
            if key is not None:
                self._upstream_seen[key] = now
        for key in [k for k, t in self._upstream_seen.items()
                    if not 0.0 <= now - t <= self.upstream_max_age]:
            del self._upstream_seen[key]
        return self.update(image, faces, stamp_ns, track_ids=ids)

    def update(self, image: np.ndarray, faces: Sequence[Face], stamp_ns: int,
               track_ids: Optional[Sequence[Optional[str]]] = None) -> list[TrackedFace]:
        """Track (or take ``track_ids``), then identify: one TrackedFace per input face."""
        faces = list(faces)
        now = int(stamp_ns) * 1e-9
        if track_ids is not None:
            if len(track_ids) != len(faces):
                raise ValueError(f"{len(faces)} faces but {len(track_ids)} track ids")
            keys = [str(k) if k not in (None, "") else None for k in track_ids]
            if self.identities is not None:
                self.identities.expire(now, self.upstream_max_age)
        elif self.tracker is not None:
            embed = self._embedder(image, faces) if self.knows_people else None
            update = self.tracker.update(faces, stamp_ns, image, embed)
            if self.identities is not None:
                self.identities.forget(str(i) for i in update.ended)
            for i, vec in update.embeddings.items():  # computed for re-identification
                self.embeddings += 1
                track = update.tracks[i]
                if track is not None:
                    track.embedding = vec
            keys = [str(t.id) if t is not None and t.confirmed else None
                    for t in update.tracks]
            if self.knows_people:
                self._identify_tracks(image, faces, keys, now, update)
            return [TrackedFace(f, k, self.identities.category(k)
                                if k is not None and self.identities is not None else None,
                                str(t.id) if t is not None else None)
                    for f, k, t in zip(faces, keys, update.tracks)]
        else:
            return self._untracked(image, faces)
        if self.knows_people:
            self._identify_tracks(image, faces, keys, now, None)
        return [TrackedFace(f, k, self.identities.category(k)
                            if k is not None and self.identities is not None else None, k)
                for f, k in zip(faces, keys)]

    def final_category(self, key) -> Optional[Category]:
        """Offline: the identity all of track ``key``'s evidence supports (None: unknown)."""
        if key is None or self.identities is None:
            return None
        return self.identities.final(key)

    def _untracked(self, image, faces) -> list[TrackedFace]:
        if not self.knows_people or not faces:
            return [TrackedFace(f) for f in faces]
        cats = self.recognizer.identify(image, faces)
        self.embeddings += len(faces)
        return [TrackedFace(f, None, c) for f, c in zip(faces, cats)]

    def _embedder(self, image, faces):
        def embed(indices):  # counted by update() with the re-identification embeddings
            return self.recognizer.embed(image, [faces[i] for i in indices])
        return embed

    def _identify_tracks(self, image, faces, keys, now, update) -> None:
        idents = self.identities
        reused = update.embeddings if update is not None else {}
        chosen, qualities, vectors = [], [], []
        for i, key in enumerate(keys):
            if key is None:
                continue
            quality = quality_score(image, faces[i])
            if i in reused or idents.wants_embedding(key, quality, now):
                chosen.append(i)
                qualities.append(quality)
        if not chosen:
            return
        fresh = [i for i in chosen if i not in reused]
        if fresh:
            computed = self.recognizer.embed(image, [faces[i] for i in fresh])
            self.embeddings += len(fresh)
            by_index = dict(zip(fresh, computed))
        else:
            by_index = {}
        for i in chosen:
            vec = reused.get(i, by_index.get(i))
            vectors.append(vec)
            if update is not None and update.tracks[i] is not None:
                update.tracks[i].embedding = vec
        idents.observe(self.recognizer.gallery, [keys[i] for i in chosen], np.stack(vectors),
                       qualities, now)
