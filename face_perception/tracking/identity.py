"""One identity per track: recognition evidence accumulated over a track's frames.

Each embedding of a track's face is an observation weighted by its face quality. The track's
evidence is the quality-weighted mean of its last ``window`` embeddings, ranked against the
gallery and judged by the project's ``OpenSetRule``; a name is given only when, in addition,
there are ``min_observations`` observations worth ``min_evidence`` quality and at least
``min_agreement`` of the observations were, judged alone by the same rule, that name (mixed
evidence, or a stranger with one lucky frame, stays unknown). The agreement counts observations
rather than weighing them: one sharp frontal view must not outvote several others.
Once named, a track changes its published name (to another or to unknown) only after
``switch_after`` consecutive observations disagree with it: never on a single frame.
Published confidence: the cosine similarity between the track's evidence (weighted mean
embedding) and the named identity.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Optional

import numpy as np

from face_perception.recognition.open_set import OpenSetRule
from face_perception.types import Category


@dataclass
class IdentityConfig:
    """How a track's evidence becomes a name, and when its face is embedded (seconds)."""

    window: int = 10              # observations kept per track (older ones are forgotten)
    min_observations: int = 3     # observations before a track can be named
    min_evidence: float = 0.5     # summed quality before a track can be named
    min_agreement: float = 0.7    # share of observations that alone give the same name
    switch_after: int = 2         # consecutive disagreeing observations to change a name
    embed_period: float = 1.0     # a named track is embedded again this often to confirm
    unsure_period: float = 0.1    # an unnamed track is embedded this often
    quality_gain: float = 0.15    # ... or at once when its quality beats its best by this
    min_quality: float = 0.02     # a view worse than this is never embedded

    def __post_init__(self):
        if int(self.window) < 1 or int(self.min_observations) < 1 \
                or int(self.switch_after) < 1:
            raise ValueError("identity window, min_observations and switch_after must be >= 1")
        if int(self.min_observations) > int(self.window):
            raise ValueError(f"min_observations ({self.min_observations}) cannot exceed the "
                             f"window ({self.window})")
        if not 0.0 <= float(self.min_agreement) <= 1.0:
            raise ValueError(f"min_agreement must be in [0, 1], got {self.min_agreement!r}")
        for name in ("embed_period", "unsure_period", "min_evidence", "quality_gain"):
            if float(getattr(self, name)) < 0:
                raise ValueError(f"identity {name} must be >= 0, got {getattr(self, name)!r}")


@dataclass
class Observation:
    embedding: np.ndarray
    quality: float
    named: Optional[str]  # the name this observation alone gets from the rule (None: unknown)


@dataclass
class TrackIdentity:
    """Evidence and published decision of one track."""

    observations: deque
    published: Optional[Category] = None
    pending: Optional[str] = None  # a differing decision waiting for confirmation ('' = unknown)
    pending_count: int = 0
    best_quality: float = -1.0
    last_embedded: Optional[float] = None
    last_seen: float = 0.0
    embeddings: int = 0
    extra: dict = field(default_factory=dict)


class TrackIdentities:
    """Identity evidence for every track key (our track ids or an upstream tracker's ids)."""

    def __init__(self, rule: OpenSetRule, config: Optional[IdentityConfig] = None):
        self.rule = rule
        self.config = config or IdentityConfig()
        self.tracks: dict[Hashable, TrackIdentity] = {}

    def _get(self, key) -> TrackIdentity:
        ident = self.tracks.get(key)
        if ident is None:
            ident = self.tracks[key] = TrackIdentity(deque(maxlen=int(self.config.window)))
        return ident

    def wants_embedding(self, key, quality: float, now: float) -> bool:
        """True when this track's face should be embedded in this frame: new, clearly better
        view, or its period is up (short while unnamed, long once named)."""
        cfg = self.config
        ident = self._get(key)
        ident.last_seen = now
        if quality < cfg.min_quality:
            return False
        if ident.last_embedded is None or quality >= ident.best_quality + cfg.quality_gain:
            return True
        period = cfg.embed_period if ident.published is not None else cfg.unsure_period
        return now - ident.last_embedded >= period

    def observe(self, gallery, keys: list, embeddings: np.ndarray, qualities: list,
                now: float) -> None:
        """Add one observation per key and re-decide those tracks (two gallery searches)."""
        if not keys:
            return
        emb = np.asarray(embeddings, np.float32)
        k = min(2, len(gallery))
        own = gallery.search(emb, k=k)
        means = []
        for key, e, q, ranked in zip(keys, emb, qualities, own):
            ident = self._get(key)
            alone = self.rule.decide(ranked)
            ident.observations.append(Observation(e, float(q),
                                                  alone.name if alone is not None else None))
            ident.best_quality = max(ident.best_quality, float(q))
            ident.last_embedded = now
            ident.last_seen = now
            ident.embeddings += 1
            means.append(_weighted_mean(ident.observations))
        for key, ranked in zip(keys, gallery.search(np.stack(means), k=k)):
            self._decide(self.tracks[key], ranked)

    def _decide(self, ident: TrackIdentity, ranked) -> None:
        cfg = self.config
        obs = ident.observations
        weight = sum(o.quality for o in obs)
        decision = self.rule.decide(ranked)
        agreement = 0.0
        if decision is not None:
            agreement = sum(o.named == decision.name for o in obs) / len(obs)
            if len(obs) < cfg.min_observations or weight < cfg.min_evidence \
                    or agreement < cfg.min_agreement:
                decision = None
        ident.extra = {"observations": len(obs), "evidence": round(weight, 3),
                       "agreement": round(agreement, 3),
                       "similarity": round(float(ranked[0][1]), 4) if ranked else None}
        current = ident.published.name if ident.published is not None else None
        new = decision.name if decision is not None else None
        if new == current:
            ident.pending, ident.pending_count = None, 0
            if decision is not None:  # same name: the confidence follows the evidence
                ident.published = decision
        elif current is None:
            ident.published = decision  # naming needs min_observations already
            ident.pending, ident.pending_count = None, 0
        else:
            label = new or ""
            ident.pending_count = ident.pending_count + 1 if ident.pending == label else 1
            ident.pending = label
            if ident.pending_count >= cfg.switch_after:
                ident.published = decision
                ident.pending, ident.pending_count = None, 0

    def category(self, key) -> Optional[Category]:
        """The track's published identity (confidence = evidence similarity), or None."""
        ident = self.tracks.get(key)
        if ident is None or ident.published is None:
            return None
        pub = ident.published
        return Category(pub.name, float(pub.confidence), {**ident.extra, "track": key})

    def forget(self, keys) -> None:
        for key in keys:
            self.tracks.pop(key, None)

    def expire(self, now: float, max_age: float) -> list:
        """Forget tracks not seen for ``max_age`` seconds (for keys no tracker ends)."""
        old = [k for k, v in self.tracks.items() if now - v.last_seen > max_age
               or now < v.last_seen]
        self.forget(old)
        return old

    def reset(self) -> None:
        self.tracks.clear()


def _weighted_mean(observations) -> np.ndarray:
    vecs = np.stack([o.embedding for o in observations])
    w = np.array([max(o.quality, 1e-6) for o in observations], np.float32)
    mean = (w[:, None] * vecs).sum(axis=0)
    return mean / max(float(np.linalg.norm(mean)), 1e-12)
