"""Face verification metrics from pair scores: k-fold accuracy (LFW protocol), ROC, AUC, EER,
TAR at fixed FAR, and a ROC plot.

Scores are similarities (higher = same person; a pair is called "same" when score >= threshold)
or distances (lower = same; "same" when distance <= threshold). Internally distances are negated
so that every computation runs on similarities; thresholds are reported in the caller's units.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from face_perception.files import atomic_path

KINDS = ("similarity", "distance")
DEFAULT_FARS = (1e-2, 1e-3, 1e-4)


class EvaluationError(ValueError):
    """Scores or labels that cannot give a meaningful verification result."""


@dataclass
class TarAtFar:
    """True accept rate at a target false accept rate, or None with the reason it is missing."""

    far: float
    tar: Optional[float]
    threshold: Optional[float]
    achieved_far: Optional[float]
    reason: str = ""


@dataclass
class VerificationReport:
    """Everything ``evaluate_verification`` measures; ``to_dict()`` gives JSON-ready values."""

    kind: str
    num_pairs: int
    num_same: int
    num_different: int
    num_folds: int
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: List[float]
    fold_thresholds: List[float]
    fold_same_fractions: List[float]
    threshold: float
    accuracy_at_threshold: float
    auc: float
    eer: float
    eer_threshold: float
    tar_at_far: List[TarAtFar]
    roc_fpr: np.ndarray = field(repr=False)
    roc_tpr: np.ndarray = field(repr=False)
    roc_thresholds: np.ndarray = field(repr=False)

    def to_dict(self, include_roc: bool = False) -> dict:
        out = asdict(self)
        for key in ("roc_fpr", "roc_tpr", "roc_thresholds"):
            value = out.pop(key)
            if include_roc:
                out[key] = [None if not math.isfinite(v) else float(v) for v in value]
        return out

    def _fold_warning(self) -> List[str]:
        lo, hi = min(self.fold_same_fractions), max(self.fold_same_fractions)
        if lo == 0.0 or hi == 1.0 or hi - lo > 0.25:
            return [f"  warning: folds are unbalanced (same-pair share {lo:.2f} to {hi:.2f}); "
                    "k-fold accuracy assumes pairs in LFW order or alternating same/different"]
        return []

    def summary(self) -> str:
        """A few human-readable lines (what the CLI prints)."""
        unit = "similarity" if self.kind == "similarity" else "distance"
        rule = ">=" if self.kind == "similarity" else "<="
        lines = [
            f"pairs: {self.num_pairs} ({self.num_same} same, {self.num_different} different)",
            f"accuracy ({self.num_folds}-fold): {self.accuracy_mean:.4f} +- "
            f"{self.accuracy_std:.4f}",
            *self._fold_warning(),
            f"threshold on all pairs: same if {unit} {rule} {self.threshold:.4f} "
            f"(accuracy {self.accuracy_at_threshold:.4f})",
            f"ROC AUC: {self.auc:.4f}   EER: {self.eer:.4f} at {unit} {self.eer_threshold:.4f}",
        ]
        for t in self.tar_at_far:
            if t.tar is None:
                lines.append(f"TAR @ FAR {t.far:g}: n/a ({t.reason})")
            else:
                lines.append(f"TAR @ FAR {t.far:g}: {t.tar:.4f} ({unit} {rule} "
                             f"{t.threshold:.4f}, measured FAR {t.achieved_far:.2g})")
        return "\n".join(lines)


# ---------------------------------------------------------------------------- inputs
def check_pairs(scores, issame, kind: str = "similarity") -> Tuple[np.ndarray, np.ndarray]:
    """Validated (similarity scores float64, labels bool); distances are negated."""
    if kind not in KINDS:
        raise EvaluationError(f"kind must be 'similarity' or 'distance', got {kind!r}")
    s = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(issame)
    if s.ndim != 1 or labels.ndim != 1 or len(s) != len(labels):
        raise EvaluationError(f"scores and issame must be 1-D of equal length, got shapes "
                              f"{s.shape} and {labels.shape}")
    if labels.dtype != bool:
        if labels.dtype.kind not in "iuf" or not np.isin(labels, (0, 1)).all():
            raise EvaluationError(f"issame must hold booleans (or 0/1), got {labels[:5]}...")
        labels = labels.astype(bool)
    if not np.isfinite(s).all():
        i = int(np.flatnonzero(~np.isfinite(s))[0])
        raise EvaluationError(f"score of pair {i} is {s[i]}; scores must be finite")
    n_same = int(labels.sum())
    if n_same == 0 or n_same == len(labels):
        raise EvaluationError(f"verification needs both same and different pairs; got {n_same} "
                              f"same and {len(labels) - n_same} different")
    return (s if kind == "similarity" else -s), labels


def pair_similarities(emb1, emb2) -> np.ndarray:
    """Cosine similarity of each row pair of two (N, D) embedding arrays."""
    a = np.asarray(emb1, dtype=np.float64)
    b = np.asarray(emb2, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2:
        raise EvaluationError(f"embedding arrays must both be (N, D), got {a.shape} and {b.shape}")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise EvaluationError("an embedding is a zero vector; cosine similarity is undefined")
    return np.einsum("ij,ij->i", a, b) / (na * nb)


# ---------------------------------------------------------------------------- metrics
def roc_curve(sims: np.ndarray, labels: np.ndarray):
    """ROC of similarity scores: (fpr, tpr, thresholds), one point per distinct score.

    Point i accepts every pair with score >= thresholds[i]; the first point (threshold +inf)
    accepts nothing.
    """
    order = np.argsort(-sims, kind="stable")
    s, y = sims[order], labels[order]
    last_of_run = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tps = np.cumsum(y)[last_of_run]
    fps = (last_of_run + 1) - tps
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    fpr = np.r_[0.0, fps / n_neg]
    tpr = np.r_[0.0, tps / n_pos]
    return fpr, tpr, np.r_[np.inf, s[last_of_run]]


def roc_auc(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """Area under the ROC (trapezoids; ties count one half, as in the Mann-Whitney U)."""
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def equal_error_rate(fpr, tpr, thresholds) -> Tuple[float, float]:
    """(EER, threshold) where the false accept and false reject rates meet on the ROC."""
    fnr = 1.0 - tpr
    gap = fpr - fnr  # -1 at the strict end, +1 at the lenient end, non-decreasing between
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0 or i == 0:
        return float(fpr[i]), float(thresholds[i])
    # The ROC is linear between its points: find where the segment crosses fpr == fnr.
    d_f, d_n = fpr[i] - fpr[i - 1], fnr[i] - fnr[i - 1]
    a = (fnr[i - 1] - fpr[i - 1]) / (d_f - d_n)
    eer = fpr[i - 1] + a * d_f
    t0 = thresholds[i - 1] if np.isfinite(thresholds[i - 1]) else thresholds[i]
    return float(eer), float(t0 + a * (thresholds[i] - t0))


def best_threshold(sims: np.ndarray, labels: np.ndarray) -> Tuple[float, float]:
    """(threshold, accuracy) maximising accuracy of "same iff score >= threshold".

    Exact: every cut between distinct scores is tried (thresholds are the midpoints), instead
    of a fixed grid of candidate thresholds.
    """
    order = np.argsort(sims, kind="stable")
    s, y = sims[order], labels[order]
    n, n_pos = len(s), int(y.sum())
    # Cut j (0..n) rejects s[:j] and accepts s[j:]; only cuts between distinct values can be
    # made with a threshold.
    neg_below = np.r_[0, np.cumsum(~y)]
    pos_below = np.r_[0, np.cumsum(y)]
    correct = neg_below + (n_pos - pos_below)
    valid = np.r_[True, np.diff(s) != 0, True]
    correct = np.where(valid, correct, -1)
    best = np.flatnonzero(correct == correct.max())
    cut = int(best[len(best) // 2])  # the middle of the optimal cuts, away from the edges
    if cut == 0:
        thr = float(np.nextafter(s[0], -np.inf))
    elif cut == n:
        thr = float(np.nextafter(s[-1], np.inf))
    else:
        thr = float((s[cut - 1] + s[cut]) / 2.0)
        if not s[cut - 1] < thr <= s[cut]:  # midpoint of adjacent floats rounds down
            thr = float(s[cut])
    return thr, float(correct[cut] / n)


def kfold_accuracy(sims: np.ndarray, labels: np.ndarray, n_folds: int = 10):
    """LFW protocol: contiguous folds; each fold's threshold is chosen on the other folds.

    Returns (accuracies, thresholds) per fold. Pair lists in LFW's order (and those from
    ``face_perception.data.pairs``) put an equal share of same/different pairs in every fold.
    """
    n = len(sims)
    if isinstance(n_folds, bool) or not isinstance(n_folds, int) or not 2 <= n_folds <= n:
        raise EvaluationError(f"n_folds must be an integer from 2 to the number of pairs ({n}), "
                              f"got {n_folds!r}")
    folds = np.array_split(np.arange(n), n_folds)
    accs, thrs = [], []
    for test in folds:
        train = np.ones(n, bool)
        train[test] = False
        thr, _ = best_threshold(sims[train], labels[train])
        accs.append(float(np.mean((sims[test] >= thr) == labels[test])))
        thrs.append(thr)
    return accs, thrs


def tar_at_far(sims: np.ndarray, labels: np.ndarray, far: float) -> TarAtFar:
    """TAR at the strictest threshold whose FAR does not exceed ``far``.

    Needs at least 1/far different pairs (otherwise FAR can only be 0 or above ``far`` and the
    number would mean nothing): below that the result is None with the reason.
    """
    neg = np.sort(sims[~labels])[::-1]
    pos = sims[labels]
    n_neg = len(neg)
    needed = math.ceil(1.0 / far - 1e-9)
    if n_neg < needed:
        return TarAtFar(far, None, None, None,
                        f"needs at least {needed} different pairs, got {n_neg}")
    allowed = int(math.floor(far * n_neg + 1e-9))  # false accepts we may make (< n_neg)
    # Just above the (allowed+1)-th highest impostor score: it and all below are rejected.
    thr = float(np.nextafter(neg[allowed], np.inf))
    return TarAtFar(far, float(np.mean(pos >= thr)), thr, float(np.mean(neg >= thr)))


def evaluate_verification(scores, issame, kind: str = "similarity", n_folds: int = 10,
                          fars: Sequence[float] = DEFAULT_FARS) -> VerificationReport:
    """All verification metrics for pair ``scores`` and boolean labels ``issame``."""
    sims, labels = check_pairs(scores, issame, kind)
    sign = 1.0 if kind == "similarity" else -1.0
    accs, thrs = kfold_accuracy(sims, labels, n_folds)
    thr_all, acc_all = best_threshold(sims, labels)
    fpr, tpr, roc_thr = roc_curve(sims, labels)
    eer, eer_thr = equal_error_rate(fpr, tpr, roc_thr)
    tars = []
    for far in fars:
        if not 0 < far < 1:
            raise EvaluationError(f"FAR targets must lie in (0, 1), got {far}")
        t = tar_at_far(sims, labels, far)
        if t.threshold is not None:
            t.threshold = sign * t.threshold
        tars.append(t)
    return VerificationReport(
        kind=kind, num_pairs=len(sims), num_same=int(labels.sum()),
        num_different=int((~labels).sum()), num_folds=n_folds,
        accuracy_mean=float(np.mean(accs)), accuracy_std=float(np.std(accs)),
        fold_accuracies=accs, fold_thresholds=[sign * t for t in thrs],
        fold_same_fractions=[float(labels[f].mean())
                             for f in np.array_split(np.arange(len(labels)), n_folds)],
        threshold=sign * thr_all, accuracy_at_threshold=acc_all,
        auc=roc_auc(fpr, tpr), eer=eer, eer_threshold=sign * eer_thr, tar_at_far=tars,
        roc_fpr=fpr, roc_tpr=tpr, roc_thresholds=sign * roc_thr)


# ---------------------------------------------------------------------------- plot
def save_roc_plot(report: VerificationReport, path: Union[str, os.PathLike],
                  title: str = "ROC") -> Path:
    """Write the ROC curve (log-scale FAR axis, EER and TAR@FAR marked) as a PNG."""
    # Figure + Agg canvas directly: no pyplot, so no global backend switch in the caller.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    floor = 0.5 / report.num_different  # where FAR = 0 is drawn on the log axis
    fpr = np.maximum(report.roc_fpr, floor)
    ax.step(fpr, report.roc_tpr, where="post", label=f"AUC {report.auc:.4f}")
    ax.plot([max(report.eer, floor)], [1 - report.eer], "o", label=f"EER {report.eer:.4f}")
    for t in report.tar_at_far:
        if t.tar is not None:
            ax.plot([t.far], [t.tar], "s", label=f"TAR {t.tar:.4f} @ FAR {t.far:g}")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("false accept rate (different pairs accepted)")
    ax.set_ylabel("true accept rate (same pairs accepted)")
    ax.set_title(f"{title}: {report.num_same} same / {report.num_different} different pairs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path
