"""The open-set rule that names a face against a gallery: a similarity threshold plus a margin.

Identification (1:N) asks more than verification (1:1): a stranger is compared with every enrolled
identity, so a name is given only when the best identity is similar enough AND clearly ahead of
the second-best identity. Every path that names faces (library, CLI, nodes, bag, tracks) decides
through ``OpenSetRule.decide``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from face_perception.types import Category


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
