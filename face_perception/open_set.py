"""The open-set rule that names a face against a gallery: a similarity threshold plus a margin.

Identification (1:N) asks more than verification (1:1): a stranger is compared with every enrolled
identity, so a name is given only when the best identity is similar enough AND clearly ahead of
the second-best identity. Every path that names faces (library, CLI, nodes, bag, tracks) decides
through ``OpenSetRule.decide``; ``resolve_rule`` picks the rule in force: explicit values, else the
gallery's calibrated one, else the model's default (why these defaults: docs/open_set.md). An
imported model has no default: its rule (``UncalibratedRule``) names nobody until calibrated.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

from face_perception.types import Category

log = logging.getLogger(__name__)
CALIBRATE_COMMAND = ("face-perception gallery calibrate GALLERY --model MODEL_DIR "
                     "--genuine DIR --strangers DIR")


@dataclass(frozen=True)
class OpenSetRule:
    """Name a face only when ``best >= threshold`` and ``best - second >= margin``.

    threshold: cosine similarity the best identity must reach. margin: lead the best identity must
    have over the second-best one (0 disables the margin test; with one enrolled identity there is
    no second and only the threshold applies).
    """

    threshold: float
    margin: float = 0.0

    def __post_init__(self):
        for name in ("threshold", "margin"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"open-set {name} must be a finite number, got {value!r}")
        if self.margin < 0:
            raise ValueError(f"open-set margin must be >= 0, got {self.margin!r}")

    def accepts(self, best: float, second: Optional[float] = None) -> bool:
        """True when a face whose best/second-best identity similarities are these is named."""
        if not best >= self.threshold:
            return False
        return second is None or best - second >= self.margin

    def decide(self, ranked: Sequence[Tuple[str, float]]) -> Optional[Category]:
        """The identity for one face from its ranked (identity, similarity) list, or None.

        ``ranked`` is best first, one entry per identity (at least the two best when there are two).
        """
        if not ranked:
            return None
        name, best = ranked[0]
        second = ranked[1][1] if len(ranked) > 1 else None
        return Category(name, float(best)) if self.accepts(float(best), second) else None

    def to_dict(self) -> dict:
        return {"threshold": float(self.threshold), "margin": float(self.margin)}

    @classmethod
    def from_dict(cls, data: Any, what: str = "open-set rule") -> OpenSetRule:
        """The rule stored as {"threshold": t, "margin": m} (e.g. in a gallery file)."""
        if not isinstance(data, dict) or "threshold" not in data:
            raise ValueError(f"{what} must be a mapping with 'threshold' and 'margin', got "
                             f"{data!r}")
        try:
            return cls(data["threshold"], data.get("margin", 0.0))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class UncalibratedRule(OpenSetRule):
    """The rule in force for a model that has no open-set rule yet (an imported model,
    ``ModelMeta.needs_open_set_calibration``): it names nobody. ``threshold`` (the model's 1:1
    figure) and ``margin`` stay for reports such as look-alikes; calibrating the gallery, or an
    explicit threshold, replaces this rule."""

    def accepts(self, best: float, second: Optional[float] = None) -> bool:
        return False


def uncalibrated_message(meta) -> str:
    """The one message that says why an imported model names nobody, and what to run."""
    return (f"model {getattr(meta, 'name', meta)!r} was imported and has no calibrated open-set "
            "rule: every face stays unknown until the gallery is calibrated with "
            f"`{CALIBRATE_COMMAND}` (or a threshold is given explicitly); see docs/models.md")


# Defaults per model name, for galleries without a calibrated rule. dlib_resnet's 1:1 threshold
# (0.906 = dlib distance 0.6) names strangers: 0.908-0.925 were seen in issue 17, and 10% of the
# pairs of different LFW faces score above it. 0.93 (distance ~0.51) keeps every real same-person
# pair of the shipped photos (0.949-0.988); the margin 0.03 rejects a stranger whose two closest
# identities are both near (a genuine match leads the second identity by 0.1 or more).
MODEL_DEFAULTS = {
    "dlib_resnet": OpenSetRule(threshold=0.93, margin=0.03),
}
# Models without an entry keep their verification threshold and get this margin.
FALLBACK_MARGIN = 0.03


def default_rule(meta) -> OpenSetRule:
    """The open-set rule for a model without calibration (``meta``: its ModelMeta)."""
    rule = MODEL_DEFAULTS.get(getattr(meta, "name", None))
    if rule is not None:
        return rule
    threshold = getattr(meta, "threshold", None)
    if threshold is None:
        raise ValueError(f"model {meta!r} has no threshold in its metadata; pass threshold=")
    if getattr(meta, "needs_open_set_calibration", False) is True:
        return UncalibratedRule(float(threshold), FALLBACK_MARGIN)
    return OpenSetRule(float(threshold), FALLBACK_MARGIN)


def gallery_rule(gallery) -> Optional[OpenSetRule]:
    """The rule calibrated for ``gallery`` and stored in its file, or None."""
    stored = getattr(gallery, "open_set", None)
    return None if stored is None else OpenSetRule.from_dict(stored, "gallery open_set")


def resolve_rule(meta, gallery=None, threshold: Optional[float] = None,
                 margin: Optional[float] = None) -> Tuple[OpenSetRule, str]:
    """(rule, where it came from): each of threshold and margin is the explicit value when
    given, else the gallery's calibrated one, else the model's default."""
    stored = gallery_rule(gallery) if gallery is not None else None
    base, source = (stored, "gallery") if stored is not None else (default_rule(meta), "model")
    if isinstance(base, UncalibratedRule) and threshold is None:
        # An imported model without calibration names nobody; only a threshold lifts that.
        log.warning(uncalibrated_message(meta))
        return UncalibratedRule(base.threshold, base.margin if margin is None
                                else float(margin)), "uncalibrated model"
    if threshold is not None or margin is not None:
        source = "explicit" if threshold is not None and margin is not None \
            else f"explicit+{source}"
    rule = OpenSetRule(base.threshold if threshold is None else float(threshold),
                       base.margin if margin is None else float(margin))
    if not -1.0 <= rule.threshold <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {rule.threshold}")
    return rule, source
