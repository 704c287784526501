"""One identity per track: recognition evidence accumulated over a track's views.

Each embedded view of a track's face is an observation: its similarity to the best-matching
gallery identities, its face quality band and how much of an independent view it is
(recognition/open_set_evidence.py). The track is named from the accumulated evidence: the
identity with the highest precision-weighted mean similarity, when that mean's excess over the
strangers' level passes a threshold that narrows with the amount of independent evidence
(``EvidenceModel``, calibrated for a target FPIR per stranger *track*) and leads the second
identity by the open-set margin. One lucky frame of a stranger does not add up to that; many
views of an enrolled person at similarities no single view could be trusted at do.

Live (causal) mode decides after every observation on the last ``window`` observations; the
published name changes (to another or to unknown) only after ``switch_after`` consecutive
decisions disagree with it. Offline mode (``keep_history``) also keeps every observation and
``final()`` decides each track once from all of them (used by ``face-perception bag``/``video``
to name every frame of a track, including those before the evidence was enough).
Published confidence: the track's weighted mean similarity to the named identity.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Hashable, Optional

import numpy as np

from face_perception.open_set import OpenSetRule
from face_perception.recognition.open_set_evidence import EvidenceModel, band_of
from face_perception.types import Category

# Identities kept per observation (best first): enough to rank a track's candidates.
TOP_K = 8


@dataclass
class IdentityConfig:
    """How a track's evidence becomes a name, and when its face is embedded (seconds)."""

    window: int = 30              # observations a live decision uses (older ones forgotten)
    min_observations: int = 2     # observations before a track can be named
    min_evidence: float = 0.3     # summed quality before a track can be named
    min_agreement: float = 0.0    # optional: share of views that alone give the name (0: off)
    switch_after: int = 2         # consecutive disagreeing decisions to change a name
    embed_period: float = 1.0     # a named track is embedded again this often to confirm
    unsure_period: float = 0.1    # an unnamed track is embedded this often at first ...
    backoff: float = 2.0          # ... and this factor less often after each view that looks
                                  # like a stranger's, up to embed_period
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
        if float(self.backoff) < 1.0:
            raise ValueError(f"identity backoff must be >= 1, got {self.backoff!r}")


@dataclass
class Observation:
    embedding: np.ndarray
    quality: float
    band: int
    weight: float                # share of an independent view (decorrelation), (0, 1]
    sims: dict                   # identity -> similarity, the TOP_K best
    floor: float                 # the lowest of those: an upper bound for the others
    named: Optional[str]         # the name this view alone gets from the rule (None: unknown)
    stamp: float


@dataclass
class TrackIdentity:
    """Evidence and published decision of one track."""

    observations: deque
    history: Optional[list] = None  # every observation (offline mode)
    published: Optional[Category] = None
    pending: Optional[str] = None  # a differing decision waiting for confirmation ('' = unknown)
    pending_count: int = 0
    best_quality: float = -1.0
    last_embedded: Optional[float] = None
    last_seen: float = 0.0
    period: Optional[float] = None  # current embedding period while unnamed (back-off)
    embeddings: int = 0
    extra: dict = field(default_factory=dict)


class TrackIdentities:
    """Identity evidence for every track key (our track ids or an upstream tracker's ids)."""

    def __init__(self, rule: OpenSetRule, config: Optional[IdentityConfig] = None,
                 evidence: Optional[EvidenceModel] = None, keep_history: bool = False):
        self.rule = rule
        self.config = config or IdentityConfig()
        self.evidence = evidence
        self.keep_history = keep_history
        self.tracks: dict[Hashable, TrackIdentity] = {}
        self.finished: dict[Hashable, Optional[Category]] = {}  # offline: forgotten tracks

    def _get(self, key) -> TrackIdentity:
        ident = self.tracks.get(key)
        if ident is None:
            ident = self.tracks[key] = TrackIdentity(
                deque(maxlen=int(self.config.window)), [] if self.keep_history else None)
        return ident

    def wants_embedding(self, key, quality: float, now: float) -> bool:
        """True when this track's face should be embedded in this frame: new, clearly better
        view, or its period is up (long once named; short while unnamed, backing off while
        its views look like a stranger's)."""
        cfg = self.config
        ident = self._get(key)
        ident.last_seen = now
        if quality < cfg.min_quality:
            return False
        if ident.last_embedded is None or quality >= ident.best_quality + cfg.quality_gain:
            ident.period = None  # a clearly better view: start again at the short period
            return True
        if ident.published is not None:
            period = cfg.embed_period
        else:
            period = ident.period if ident.period is not None else cfg.unsure_period
        return now - ident.last_embedded >= period - 1e-9

    def observe(self, gallery, keys: list, embeddings: np.ndarray, qualities: list,
                now: float) -> None:
        """Add one observation per key and re-decide those tracks (one gallery search)."""
        if not keys:
            return
        emb = np.asarray(embeddings, np.float32)
        k = min(TOP_K, len(gallery))
        ranked_all = gallery.search(emb, k=k)
        model = self.evidence
        for key, e, q, ranked in zip(keys, emb, qualities, ranked_all):
            ident = self._get(key)
            alone = self.rule.decide(ranked[:2])
            weight = 1.0
            if ident.observations and model is not None:
                prev = ident.observations[-1]
                change = 1.0 - float(np.dot(e, prev.embedding))
                weight = min(1.0, max((now - prev.stamp) / model.decorrelation_seconds,
                                      change / model.decorrelation_distance))
                weight = max(weight, 1e-3)
            obs = Observation(e, float(q), band_of(float(q)), weight,
                              {n: float(s) for n, s in ranked},
                              float(ranked[-1][1]) if ranked else -1.0,
                              alone.name if alone is not None else None, now)
            ident.observations.append(obs)
            if ident.history is not None:
                ident.history.append(obs)
            ident.best_quality = max(ident.best_quality, float(q))
            ident.last_embedded = now
            ident.last_seen = now
            ident.embeddings += 1
            decision, ident.extra = self.decide(list(ident.observations), looks=True)
            self._publish(ident, decision)
            if ident.published is None:
                stranger_like = ident.extra.get("excess", 0.0) < 0.5 * ident.extra.get(
                    "needed", 0.0)
                cfg = self.config
                if stranger_like:
                    base = ident.period if ident.period is not None else cfg.unsure_period
                    ident.period = min(max(base, 1e-3) * cfg.backoff,
                                       max(cfg.embed_period, cfg.unsure_period))
                else:
                    ident.period = None

    def decide(self, observations: list, looks: bool = False
               ) -> tuple[Optional[Category], dict]:
        """The name (or None) the evidence of these observations supports, and the figures.

        looks: the decision is taken again after every observation (live): the FPIR is spent
        over the looks (alpha spending, see docs/open_set.md#tracks)."""
        cfg = self.config
        if not observations:
            return None, {}
        names: dict = {}
        for o in observations:
            for n in o.sims:
                names[n] = None
        weights = np.array([o.weight for o in observations])
        quality = sum(o.quality for o in observations)
        means = {}
        model = self.evidence
        for n in names:
            sims = np.array([o.sims.get(n, o.floor) for o in observations])
            means[n] = float((weights * sims).sum() / weights.sum())
        ranked = sorted(means.items(), key=lambda t: -t[1])
        best, best_mean = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else None
        extra = {"observations": len(observations), "evidence": round(quality, 3),
                 "similarity": round(best_mean, 4), "candidate": best}
        if model is None:  # no evidence model: the open-set rule on the mean similarity
            ok = self.rule.accepts(best_mean, second)
            extra.update(excess=best_mean - self.rule.threshold, needed=0.0)
        else:
            sims = [o.sims.get(best, o.floor) for o in observations]
            bands = [o.band for o in observations]
            excess, needed, n_eff = model.statistic(sims, bands, weights)
            if looks:
                needed *= _look_factor(model, n_eff)
            ok = excess >= needed and best_mean >= model.min_similarity \
                and (second is None or best_mean - second >= self.rule.margin)
            extra.update(excess=round(excess, 4), needed=round(needed, 4),
                         n_eff=round(n_eff, 2))
        if cfg.min_agreement > 0:
            agreement = sum(o.named == best for o in observations) / len(observations)
            extra["agreement"] = round(agreement, 3)
            ok = ok and agreement >= cfg.min_agreement
        ok = ok and len(observations) >= cfg.min_observations and quality >= cfg.min_evidence
        return (Category(best, best_mean) if ok else None), extra

    def _publish(self, ident: TrackIdentity, decision: Optional[Category]) -> None:
        cfg = self.config
        current = ident.published.name if ident.published is not None else None
        new = decision.name if decision is not None else None
        if new == current:
            ident.pending, ident.pending_count = None, 0
            if decision is not None:  # same name: the confidence follows the evidence
                ident.published = decision
        elif current is None:
            ident.published = decision
            ident.pending, ident.pending_count = None, 0
        else:  # a named track stays named until evidence against it persists
            label = new or ""
            ident.pending_count = ident.pending_count + 1 if ident.pending == label else 1
            ident.pending = label
            if ident.pending_count >= cfg.switch_after:
                ident.published = decision
                ident.pending, ident.pending_count = None, 0

    def category(self, key) -> Optional[Category]:
        """The track's published identity (confidence = mean similarity), or None."""
        ident = self.tracks.get(key)
        if ident is None or ident.published is None:
            return None
        pub = ident.published
        return Category(pub.name, float(pub.confidence), {**ident.extra, "track": key})

    def final(self, key) -> Optional[Category]:
        """Offline: the identity all of the track's evidence supports (one look), or None."""
        if key in self.finished:
            return self.finished[key]
        ident = self.tracks.get(key)
        if ident is None:
            return None
        obs = ident.history if ident.history is not None else list(ident.observations)
        decision, extra = self.decide(obs, looks=False)
        if decision is None:
            return None
        return Category(decision.name, float(decision.confidence),
                        {**extra, "track": key, "identity_mode": "offline"})

    def forget(self, keys) -> None:
        for key in keys:
            if self.keep_history and key in self.tracks:
                self.finished[key] = self.final(key)
            self.tracks.pop(key, None)

    def expire(self, now: float, max_age: float) -> list:
        """Forget tracks not seen for ``max_age`` seconds (for keys no tracker ends)."""
        old = [k for k, v in self.tracks.items() if now - v.last_seen > max_age
               or now < v.last_seen]
        self.forget(old)
        return old

    def reset(self) -> None:
        self.forget(list(self.tracks))


def _look_factor(model: EvidenceModel, n_eff: float) -> float:
    """How much higher a live decision's bar is than one look's: the target FPIR is shared by
    the looks of a track, about one per doubling of its independent evidence."""
    looks = 1.0 + math.log2(max(n_eff, 1.0))
    z_live = _z(model.target_fpir / looks)
    return z_live / model.z


def _z(p: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1.0 - p)
