"""Naming a *track* from all of its views: a threshold on the evidence mean that narrows with the
amount of independent evidence, calibrated so that a stranger's track is named at most at the
target FPIR (docs/open_set.md#tracks).

Model. For a stranger, the similarity of one view to the best-matching enrolled identity is
``mu + b + e``: ``mu`` the strangers' mean, ``b`` a per-person offset that does NOT average out
over views (a stranger who resembles an enrolled person resembles them in every frame; between-
person sd ``between``), ``e`` view noise that does (within-person sd ``within``). Both depend on
the view's quality, so each quantity is kept per quality band. A track's statistic is the
precision-weighted mean of its views' excess similarity ``s - mu``; under the stranger model it
has standard deviation ``sqrt(between^2 + V)`` with V the view noise left after averaging, so
the track is named when the statistic exceeds ``z(target FPIR)`` of those standard deviations.
One view alone meets the single-view threshold; many independent views lower it towards
``mu + z * between``, never below.

Views that disagree more than the model's within-person spread (a track mixing two faces) are
judged with the spread they show (a tenth of the views, the farthest from the median, left
out). Correlated views: consecutive frames of a still face are nearly the same picture, so each
view counts as ``d`` in [0, 1] of an independent view: 1 after ``decorrelation_seconds`` or an
embedding change of ``decorrelation_distance`` (cosine distance) since the track's previous
view, proportionally less before.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from statistics import NormalDist
from typing import Optional, Sequence

import numpy as np

# Quality bands (face_quality.quality_score: size x pose x sharpness in [0, 1]): lower edges.
BAND_EDGES = (0.0, 0.15, 0.45)
BAND_NAMES = ("low", "mid", "high")


def band_of(quality: float) -> int:
    """Index of the quality band a view of this quality falls in."""
    band = 0
    for i, edge in enumerate(BAND_EDGES):
        if quality >= edge:
            band = i
    return band


@dataclass(frozen=True)
class BandStats:
    """Strangers' best-identity similarity in one quality band: mean, between-person and
    within-person standard deviations, and how many views/people they were measured on."""

    mean: float
    between: float
    within: float
    views: int = 0
    people: int = 0

    def __post_init__(self):
        for name in ("mean", "between", "within"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"evidence band {name} must be a finite number, got {value!r}")
        if self.between < 0 or self.within <= 0:
            raise ValueError(f"evidence band sds must be between >= 0 and within > 0, got "
                             f"{self.between!r}, {self.within!r}")


@dataclass(frozen=True)
class EvidenceModel:
    """How a track's views become a name (see the module docstring)."""

    bands: tuple                      # BandStats per quality band (BAND_NAMES order)
    target_fpir: float = 0.01         # share of stranger tracks that may be named
    decorrelation_seconds: float = 0.3
    decorrelation_distance: float = 0.02
    min_similarity: float = -1.0      # a track's mean similarity is never named below this
    source: str = "defaults"          # where the band statistics come from

    def __post_init__(self):
        if len(self.bands) != len(BAND_NAMES):
            raise ValueError(f"evidence model needs {len(BAND_NAMES)} bands, got "
                             f"{len(self.bands)}")
        if not 0.0 < float(self.target_fpir) < 0.5:
            raise ValueError(f"target FPIR must be in (0, 0.5), got {self.target_fpir!r}")
        if self.decorrelation_seconds <= 0 or self.decorrelation_distance <= 0:
            raise ValueError("decorrelation_seconds and decorrelation_distance must be > 0")

    @property
    def z(self) -> float:
        return NormalDist().inv_cdf(1.0 - float(self.target_fpir))

    def single_view_threshold(self, band: int) -> float:
        b = self.bands[band]
        return b.mean + self.z * math.hypot(b.between, b.within)

    def floor(self, band: int) -> float:
        """The lowest mean similarity any amount of evidence in this band can be named at."""
        b = self.bands[band]
        return b.mean + self.z * b.between

    def statistic(self, sims: Sequence[float], bands: Sequence[int],
                  weights: Sequence[float]) -> tuple[float, float, float]:
        """(excess, needed, n_eff) of views with these similarities to one identity, quality
        bands and decorrelation weights: named when excess >= needed."""
        sims = np.asarray(sims, np.float64)
        mu = np.array([self.bands[b].mean for b in bands])
        within = np.array([self.bands[b].within for b in bands])
        between = np.array([self.bands[b].between for b in bands])
        d = np.clip(np.asarray(weights, np.float64), 1e-3, 1.0)
        if len(sims) > 1:
            # Views that disagree more than one person's views do (a track that mixes two
            # faces) get the spread they show, not the model's; a tenth of the views farthest
            # from the median are left out of it (one odd frame does not make a track mixed).
            keep = np.argsort(np.abs(sims - np.median(sims)))[:len(sims) - len(sims) // 10]
            s, dk = sims[keep], d[keep]
            spread = float(np.sqrt(np.average((s - np.average(s, weights=dk)) ** 2,
                                              weights=dk) * len(s) / max(len(s) - 1, 1)))
            within = np.maximum(within, spread)
        w = d / within ** 2  # precision weights: sharp, large views count more
        excess = float((w * (sims - mu)).sum() / w.sum())
        # View noise left in the weighted mean when each view counts as d independent ones.
        noise = float((w ** 2 * within ** 2 / d).sum() / w.sum() ** 2)
        persistent = float((w * between).sum() / w.sum())
        n_eff = float(d.sum())
        return excess, self.z * math.sqrt(persistent ** 2 + noise), n_eff

    def to_dict(self) -> dict:
        out = asdict(self)
        out["bands"] = {name: asdict(b) for name, b in zip(BAND_NAMES, self.bands)}
        return out

    @classmethod
    def from_dict(cls, data, what: str = "evidence model") -> EvidenceModel:
        if not isinstance(data, dict) or not isinstance(data.get("bands"), dict):
            raise ValueError(f"{what} must be a mapping with 'bands', got {data!r}")
        try:
            bands = tuple(BandStats(**data["bands"][name]) for name in BAND_NAMES)
            rest = {k: data[k] for k in ("target_fpir", "decorrelation_seconds",
                                         "decorrelation_distance", "min_similarity", "source")
                    if k in data}
            return cls(bands, **rest)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{what}: {exc}") from None


# Shipped defaults for dlib_resnet, from `python -m benchmarks.naming --calibrate` (strangers'
# views of the test photos through CALIBRATION_EFFECTS against the two 2-person galleries of
# test/tracking_scenes.py, plus 30 LFW crops: 363 views of 37 strangers). Measured (mean /
# between sd / within sd): low 0.858/0.014/0.018 (289 views, 33 strangers), mid
# 0.861/0.014/0.019 (63, 14), high 0.856/0.034/0.007 (11 views of 4 people). Kept conservative:
# between sd at least 0.02, within sd at least 0.015 (thin data); never named below the 1:1
# threshold 0.9062.
DEFAULT_MODELS = {
    "dlib_resnet": EvidenceModel(bands=(
        BandStats(mean=0.858, between=0.020, within=0.018, views=289, people=33),
        BandStats(mean=0.861, between=0.020, within=0.019, views=63, people=14),
        BandStats(mean=0.856, between=0.034, within=0.015, views=11, people=4),
    ), min_similarity=0.9062, source="dlib_resnet defaults (test photos, docs/open_set.md)"),
}


def evidence_model_for(meta, gallery=None, rule=None) -> EvidenceModel:
    """The gallery's calibrated evidence model, else the model's shipped default, else one
    derived from the open-set rule (single views named at its threshold)."""
    stored = (getattr(gallery, "open_set", None) or {}).get("tracks") \
        if gallery is not None else None
    if meta is None and rule is None and not stored:
        raise ValueError("an evidence model needs the model's metadata or an open-set rule")
    if stored:
        return EvidenceModel.from_dict(stored, "gallery open_set tracks")
    model = DEFAULT_MODELS.get(getattr(meta, "name", None))
    if model is not None:
        return model
    threshold = rule.threshold if rule is not None else float(meta.threshold)
    # Unknown model: strangers assumed at threshold - 0.1 with equal between/within spread.
    sd = 0.1 / NormalDist().inv_cdf(0.99) / math.sqrt(2)
    band = BandStats(threshold - 0.1, sd, sd)
    floor = float(getattr(meta, "threshold", None) or -1.0)
    return EvidenceModel((band, band, band), min_similarity=floor,
                         source="derived from the open-set threshold")


@dataclass
class StrangerViews:
    """Best-identity similarities of strangers' views, grouped by person, with qualities."""

    person: list = field(default_factory=list)
    similarity: list = field(default_factory=list)
    quality: list = field(default_factory=list)

    def add(self, person, similarity: float, quality: float) -> None:
        self.person.append(person)
        self.similarity.append(float(similarity))
        self.quality.append(float(quality))


def fit_bands(views: StrangerViews, fallback: Optional[EvidenceModel] = None,
              min_people: int = 3) -> tuple:
    """BandStats per quality band from strangers' views (one-way random-effects split of the
    variance into between-person and within-person parts). A band with views of fewer than
    ``min_people`` people takes the fallback's stats (or the nearest fitted band's)."""
    sims = np.asarray(views.similarity, np.float64)
    bands = np.array([band_of(q) for q in views.quality])
    people = np.asarray(views.person, dtype=object)
    fitted: list = [None] * len(BAND_NAMES)
    for b in range(len(BAND_NAMES)):
        sel = bands == b
        groups = {}
        for p, s in zip(people[sel], sims[sel]):
            groups.setdefault(p, []).append(s)
        if len(groups) < min_people:
            continue
        means = np.array([np.mean(v) for v in groups.values()])
        within_ss = sum(((np.asarray(v) - np.mean(v)) ** 2).sum() for v in groups.values())
        within_df = sum(len(v) - 1 for v in groups.values())
        within = math.sqrt(within_ss / within_df) if within_df > 0 else float(np.std(means))
        within = max(within, 0.005)
        sizes = np.array([len(v) for v in groups.values()], np.float64)
        # Variance of person means minus what view noise explains of it.
        between_var = float(np.var(means, ddof=1)) - float(np.mean(within ** 2 / sizes))
        fitted[b] = BandStats(float(np.mean(sims[sel])), math.sqrt(max(between_var, 0.0)),
                              within, int(sel.sum()), len(groups))
    for b in range(len(BAND_NAMES)):
        if fitted[b] is None:
            if fallback is not None:
                fitted[b] = fallback.bands[b]
            else:
                near = [f for f in fitted if f is not None]
                if not near:
                    raise ValueError(f"no quality band has views of {min_people} strangers: "
                                     "cannot fit the track evidence model")
                fitted[b] = near[0]
    return tuple(fitted)
