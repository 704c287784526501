"""Choosing what to enrol from many views of one face: the quality gate, a check that the views
show one person, and the best distinct views (quality first, then spread).

Rules (docs/gallery.md, "Enrolment from video"):
- gate: every view must pass ``face_quality.assess_face`` (size, sharpness, pose);
- one person: the two least similar views seed two groups, every view joins the seed it is more
  similar to; when the two groups' mean embeddings are less similar than the model's 1:1
  threshold (``ModelMeta.threshold``), the views hold two people and nothing is enrolled;
- distinct views: among the good views (quality at least GOOD_SHARE of the best one), start from
  the best and repeatedly add the view least similar to those already chosen (greedy
  farthest-point in embedding space, which spreads pose, light and expression); a view that is
  a near copy (similarity >= DUPLICATE_SIMILARITY) of a chosen one adds nothing and is skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from face_perception.recognition.face_quality import assess_face, quality_score
from face_perception.types import Face

GOOD_SHARE = 0.5
DUPLICATE_SIMILARITY = 0.999
CANDIDATES = 64  # gated views kept per face (best quality first): bounded memory and embedding
EMBED_CHUNK = 32


@dataclass
class View:
    """One gated, aligned face: its chip, quality score (0..1), where it came from."""

    chip: np.ndarray
    quality: float
    source: str
    embedding: Optional[np.ndarray] = None


@dataclass
class ViewPool:
    """The gated views of one face seen over frames; the ``capacity`` best by quality kept."""

    capacity: int = CANDIDATES
    views: list = field(default_factory=list)
    refused: list = field(default_factory=list)  # reasons the gate gave
    seen: int = 0  # faces considered

    def consider(self, recognizer, image: np.ndarray, face: Face, source: str) -> str:
        """Gate one face and keep it; '' when kept, else the gate's reason."""
        self.seen += 1
        ((landmarks, _how),) = recognizer.complete_landmarks(image, [face])
        chip = recognizer.embedder.align(image, landmarks)
        verdict = assess_face(landmarks, chip)
        if not verdict.ok:
            why = "; ".join(verdict.reasons)
            self.refused.append(why)
            return why
        self.views.append(View(chip, quality_score(image, face), source))
        if len(self.views) > self.capacity:
            self.views.sort(key=lambda v: -v.quality)
            del self.views[self.capacity:]
        return ""

    def embed(self, embedder) -> None:
        """Embed the views that have no embedding yet (batched)."""
        todo = [v for v in self.views if v.embedding is None]
        for a in range(0, len(todo), EMBED_CHUNK):
            part = todo[a:a + EMBED_CHUNK]
            emb = np.asarray(embedder.embed_chips(np.stack([v.chip for v in part])), np.float32)
            for v, e in zip(part, emb):
                v.embedding = e / max(float(np.linalg.norm(e)), 1e-12)


@dataclass
class PeopleSplit:
    """Two groups of views whose mean embeddings are ``similarity`` apart (< the threshold)."""

    similarity: float
    sizes: tuple
    threshold: float

    def reason(self) -> str:
        return (f"the views hold two people: they split into groups of {self.sizes[0]} and "
                f"{self.sizes[1]} views whose mean embeddings have similarity "
                f"{self.similarity:.3f}, below the model's 1:1 threshold {self.threshold:.3f}")


def two_people(embeddings: np.ndarray, threshold: float) -> Optional[PeopleSplit]:
    """The split of unit ``embeddings`` (n, D) into two people by the module's rule, or None."""
    emb = np.asarray(embeddings, np.float32)
    if len(emb) < 2:
        return None
    sims = emb @ emb.T
    a, b = np.unravel_index(int(np.argmin(sims)), sims.shape)
    if sims[a, b] >= threshold:
        return None
    to_a = sims[:, a] >= sims[:, b]
    means = [emb[to_a].mean(axis=0), emb[~to_a].mean(axis=0)]
    means = [m / max(float(np.linalg.norm(m)), 1e-12) for m in means]
    similarity = float(means[0] @ means[1])
    if similarity >= threshold:
        return None
    return PeopleSplit(similarity, (int(to_a.sum()), int((~to_a).sum())), float(threshold))


def choose_distinct(views: Sequence[View], keep: int) -> list[View]:
    """Up to ``keep`` embedded views by the module's rule (best first, then farthest)."""
    if not views or keep < 1:
        return []
    ranked = sorted(views, key=lambda v: -v.quality)
    best = ranked[0].quality
    good = [v for v in ranked if v.quality >= GOOD_SHARE * best] or ranked[:1]
    chosen = [good[0]]
    rest = good[1:]
    emb = np.stack([v.embedding for v in rest]) if rest else np.zeros((0, 1), np.float32)
    nearest = (emb @ chosen[0].embedding) if rest else np.zeros(0)
    while len(chosen) < keep and len(rest):
        i = int(np.argmin(nearest))  # the view least like everything chosen so far
        if nearest[i] >= DUPLICATE_SIMILARITY:
            break
        chosen.append(rest[i])
        nearest = np.maximum(nearest, emb @ rest[i].embedding)
        nearest[i] = np.inf
    return chosen


@dataclass
class Selection:
    """What to enrol (views with embeddings and qualities) or why nothing ('' when fine)."""

    views: list = field(default_factory=list)
    reason: str = ""
    candidates: int = 0  # gated views the choice was made from

    @property
    def embeddings(self) -> np.ndarray:
        return np.stack([v.embedding for v in self.views]).astype(np.float32)

    @property
    def qualities(self) -> np.ndarray:
        return np.array([v.quality for v in self.views], np.float32)

    @property
    def sources(self) -> list:
        return [v.source for v in self.views]


def select_views(pool: ViewPool, embedder, keep: int, threshold: Optional[float] = None,
                 what: str = "the face") -> Selection:
    """Embed the pool, refuse two people (1:1 ``threshold``: default the model's own), and
    choose up to ``keep`` distinct views."""
    if not pool.views:
        if not pool.seen:
            return Selection(reason=f"{what} was not seen")
        return Selection(reason=f"all {pool.seen} views of {what} were refused by the quality "
                                f"gate ({pool.refused[-1]})")
    pool.embed(embedder)
    limit = float(embedder.meta.threshold if threshold is None else threshold)
    split = two_people(np.stack([v.embedding for v in pool.views]), limit)
    if split is not None:
        return Selection(reason=f"{what}: {split.reason()}", candidates=len(pool.views))
    return Selection(choose_distinct(pool.views, keep), candidates=len(pool.views))


def already_enrolled_as(gallery, embeddings: np.ndarray, name: str,
                        threshold: float) -> Optional[tuple[str, float]]:
    """(identity, similarity) of the identity other than ``name`` that some view of
    ``embeddings`` already matches best (similarity to its best sample >= ``threshold``), or
    None when no view matches anyone else."""
    if gallery is None or len(gallery) == 0:
        return None
    found: Optional[tuple[str, float]] = None
    k = min(len(gallery), 2)  # the best other identity is among the top two
    for hits in gallery.search(np.asarray(embeddings, np.float32), k=k, mode="sample"):
        for other, sim in hits:
            if other != name and sim >= threshold and (found is None or sim > found[1]):
                found = (other, float(sim))
    return found
