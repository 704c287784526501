"""Open-set (1:N) identification metrics, calibration of the rule, and look-alike identities.

Mated probes are photos of enrolled people, non-mated probes photos of strangers. A rule's
FPIR is the share of strangers given a name; its FNIR the share of mated probes not given their
own name (rejected or misnamed), as in NIST's 1:N face recognition tests.
"""
from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from face_perception.open_set import OpenSetRule

TARGET_FPIRS = (0.1, 0.01, 0.001)
# Margins tried by calibration (cosine similarity); the threshold is then set per margin.
CALIBRATION_MARGINS = tuple(round(0.01 * i, 2) for i in range(0, 9))


@dataclass
class OpenSetScores:
    """Best and second-best identity similarities of mated and non-mated probes."""

    mated_truth: list        # the probe's own identity
    mated_best_name: list
    mated_best: np.ndarray
    mated_second: np.ndarray  # -inf where the gallery has one identity
    nonmated_best: np.ndarray
    nonmated_second: np.ndarray
    gallery_identities: int

    @property
    def num_mated(self) -> int:
        return len(self.mated_best)

    @property
    def num_nonmated(self) -> int:
        return len(self.nonmated_best)


def search_scores(gallery, embeddings, mode: str) -> tuple[list, np.ndarray, np.ndarray]:
    """(best names, best similarities, second-best identity similarities) per embedding."""
    emb = np.asarray(embeddings, np.float32).reshape(-1, gallery.embedding_size)
    if len(emb) == 0:
        return [], np.zeros(0), np.zeros(0)
    ranked = gallery.search(emb, k=2, mode=mode)
    names = [r[0][0] for r in ranked]
    best = np.array([r[0][1] for r in ranked], np.float64)
    second = np.array([r[1][1] if len(r) > 1 else -np.inf for r in ranked], np.float64)
    return names, best, second


def open_set_scores(gallery, mated: Sequence[tuple], nonmated, mode: str) -> OpenSetScores:
    """Scores of ``mated`` [(identity, embedding)] and ``nonmated`` (N, D) against ``gallery``."""
    truth = [name for name, _ in mated]
    names, best, second = search_scores(gallery, [e for _, e in mated], mode)
    _, nb, ns = search_scores(gallery, nonmated, mode)
    return OpenSetScores(truth, names, best, second, nb, ns, len(gallery))


def outcome(scores: OpenSetScores, rule: OpenSetRule) -> dict:
    """Counts and rates of one rule: named right, wrong names, missed, stranger names."""
    right = wrong = 0
    for truth, name, b, s in zip(scores.mated_truth, scores.mated_best_name, scores.mated_best,
                                 scores.mated_second):
        if rule.accepts(b, None if s == -np.inf else s):
            right += name == truth
            wrong += name != truth
    strangers = sum(rule.accepts(b, None if s == -np.inf else s)
                    for b, s in zip(scores.nonmated_best, scores.nonmated_second))
    m, n = scores.num_mated, scores.num_nonmated
    return {"threshold": rule.threshold, "margin": rule.margin,
            "mated": m, "named_right": right, "wrong_names": wrong, "missed": m - right - wrong,
            "nonmated": n, "stranger_names": int(strangers),
            "fnir": (m - right) / m if m else None, "fpir": strangers / n if n else None}


def _accepted_scores(best: np.ndarray, second: np.ndarray, margin: float) -> np.ndarray:
    """Each probe's best similarity where it passes the margin test, else -inf."""
    return np.where(best - second >= margin, best, -np.inf)


def threshold_for_fpir(nonmated_best, nonmated_second, target: float,
                       margin: float = 0.0) -> Optional[float]:
    """The lowest threshold at which at most ``target`` of the strangers get a name with this
    margin; None when there are fewer than 1/target strangers (the rate cannot be shown)."""
    n = len(nonmated_best)
    if n == 0 or target * n < 1 - 1e-9:
        return None
    allowed = int(math.floor(target * n + 1e-9))
    acc = np.sort(_accepted_scores(np.asarray(nonmated_best), np.asarray(nonmated_second),
                                   margin))[::-1]
    if allowed >= n or acc[allowed] == -np.inf:
        return -1.0  # the margin alone keeps enough strangers out
    return float(np.nextafter(acc[allowed], np.inf))


def fnir_at_fpir(scores: OpenSetScores, targets=TARGET_FPIRS, margin: float = 0.0) -> list:
    """[{fpir, threshold, fnir}] per target FPIR (fnir None with a reason where data is short)."""
    out = []
    for target in targets:
        thr = threshold_for_fpir(scores.nonmated_best, scores.nonmated_second, target, margin)
        if thr is None:
            out.append({"fpir": target, "threshold": None, "fnir": None,
                        "reason": f"needs >= {math.ceil(1 / target)} stranger faces, have "
                                  f"{scores.num_nonmated}"})
        elif not scores.num_mated:
            out.append({"fpir": target, "threshold": thr, "fnir": None,
                        "reason": "no mated probes"})
        else:
            res = outcome(scores, OpenSetRule(max(thr, -1.0), margin))
            out.append({"fpir": target, "threshold": thr, "fnir": res["fnir"]})
    return out


def rank1_rate(scores: OpenSetScores) -> Optional[float]:
    """Share of mated probes whose most similar identity is their own (no threshold)."""
    if not scores.num_mated:
        return None
    return sum(a == b for a, b in zip(scores.mated_truth, scores.mated_best_name)) \
        / scores.num_mated


def calibrate_rule(scores: OpenSetScores, target_fpir: float, floor: float,
                   margins=CALIBRATION_MARGINS) -> dict:
    """Threshold and margin for ``target_fpir`` at this gallery: per margin, the lowest
    threshold (never below ``floor``, the model's 1:1 threshold) whose measured FPIR meets the
    target; the pair with the lowest FNIR wins (ties: the smaller margin). Deterministic.

    Returns {"threshold", "margin", "evidence": {...rates and counts...}}.
    """
    if not 0 < target_fpir < 1:
        raise ValueError(f"target FPIR must be in (0, 1), got {target_fpir!r}")
    if scores.num_nonmated * target_fpir < 1 - 1e-9:
        raise ValueError(f"calibrating for FPIR {target_fpir:g} needs at least "
                         f"{math.ceil(1 / target_fpir)} stranger faces, got "
                         f"{scores.num_nonmated}")
    if not scores.num_mated:
        raise ValueError("calibration needs photos of enrolled people that are not enrolled "
                         "(mated probes) to measure how many would be missed; got none")
    best = None
    for margin in margins:
        thr = threshold_for_fpir(scores.nonmated_best, scores.nonmated_second, target_fpir,
                                 margin)
        # Rounded up (never down onto a stranger's score) to keep the stored value readable.
        rule = OpenSetRule(math.ceil(max(thr, floor) * 1e6) / 1e6, margin)
        res = outcome(scores, rule)
        key = (res["fnir"], margin)
        if best is None or key < best[0]:
            best = (key, rule, res)
    _, rule, res = best
    evidence = {"target_fpir": target_fpir, "fpir": res["fpir"], "fnir": res["fnir"],
                "strangers": res["nonmated"], "stranger_names": res["stranger_names"],
                "mated": res["mated"], "named_right": res["named_right"],
                "wrong_names": res["wrong_names"], "missed": res["missed"],
                "gallery_identities": scores.gallery_identities, "floor": floor}
    return {**rule.to_dict(), "evidence": evidence}


def look_alikes(gallery, threshold: float, mode: str = "sample") -> list:
    """[(a, b, similarity)] for pairs of enrolled identities at least ``threshold`` similar
    (closest samples in "sample" mode, means in "mean" mode), most similar first: faces of
    either may be named as the other."""
    names = gallery.names
    if len(names) < 2:
        return []
    out = []
    if mode == "mean":
        means = gallery.means()
        sims = means @ means.T
        for i in range(len(names)):
            for j in range(i + 1, len(names)):
                if sims[i, j] >= threshold:
                    out.append((names[i], names[j], float(sims[i, j])))
    else:
        position = {name: i for i, name in enumerate(names)}
        for i, a in enumerate(names):
            hits = gallery.search(gallery.samples(a), k=len(names), mode="sample")
            closest: dict = {}
            for row in hits:
                for name, sim in row:
                    if position[name] > i:
                        closest[name] = max(closest.get(name, -1.0), sim)
            out += [(a, b, s) for b, s in closest.items() if s >= threshold]
    return sorted(out, key=lambda t: -t[2])


def save_det_plot(scores: OpenSetScores, path: Union[str, os.PathLike], margin: float,
                  rule: Optional[OpenSetRule] = None, title: str = "DET") -> Path:
    """FNIR against FPIR over all thresholds (log FPIR axis) as a PNG, the rule marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = max(scores.num_nonmated, 1)
    acc = _accepted_scores(scores.nonmated_best, scores.nonmated_second, margin)
    thresholds = np.unique(np.r_[acc[np.isfinite(acc)], scores.mated_best, 1.0])
    fpir = np.array([(acc >= t).mean() if len(acc) else 0.0 for t in thresholds])
    fnir = np.array([outcome(scores, OpenSetRule(float(t), margin))["fnir"] or 0.0
                     for t in thresholds])
    floor = 0.5 / n
    fig = Figure(figsize=(6, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.step(np.maximum(fpir, floor), fnir, where="post", label=f"margin {margin:g}")
    if rule is not None:
        res = outcome(scores, rule)
        ax.plot([max(res["fpir"] or 0.0, floor)], [res["fnir"] or 0.0], "o",
                label=f"rule t={rule.threshold:.3f} m={rule.margin:.2f}")
    ax.set_xscale("log")
    ax.set_xlim(floor, 1.0)
    ax.set_ylim(0.0, 1.01)
    ax.set_xlabel("FPIR (strangers given a name)")
    ax.set_ylabel("FNIR (enrolled people not given their name)")
    ax.set_title(f"{title}: {scores.num_mated} mated / {scores.num_nonmated} non-mated, "
                 f"{scores.gallery_identities} identities")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def split_image_folder(tree: dict, enroll: int, known_fraction: float, seed: int):
    """Seeded split of {identity: files}: (enrol {id: files}, mated [(id, file)], strangers
    [file]). Known identities are drawn among those with more than ``enroll`` photos (others
    are strangers); each known identity enrols its first ``enroll`` shuffled photos."""
    if enroll < 1:
        raise ValueError(f"enroll must be >= 1 photo per identity, got {enroll}")
    if not 0 < known_fraction <= 1:
        raise ValueError(f"known fraction must be in (0, 1], got {known_fraction}")
    rng = random.Random(seed)
    ids = sorted(tree)
    eligible = [i for i in ids if len(tree[i]) > enroll]
    if not eligible:
        raise ValueError(f"no identity has more than {enroll} photos: nothing to enrol and "
                         "still probe")
    rng.shuffle(eligible)
    known = sorted(eligible[:max(1, round(known_fraction * len(eligible)))])
    enrol, mated, strangers = {}, [], []
    for ident in ids:
        files = sorted(map(str, tree[ident]))
        if ident in known:
            rng.shuffle(files)
            enrol[ident] = files[:enroll]
            mated += [(ident, f) for f in files[enroll:]]
        else:
            strangers += files
    if not strangers:
        raise ValueError("every identity was enrolled: no strangers left to measure FPIR")
    return enrol, mated, strangers


def evaluate_open_set(detector, embedder, folder, enroll: int = 1, known_fraction: float = 0.5,
                      seed: int = 0, mode: str = "sample", rule: Optional[OpenSetRule] = None,
                      det_path: Optional[Union[str, os.PathLike]] = None) -> dict:
    """Open-set evaluation on an ImageFolder: enrol ``enroll`` photos of a seeded share of the
    identities, probe with their other photos and with every photo of the others (strangers).
    Reports FNIR at FPIR 0.1/0.01/0.001, rank-1 rate, and wrong/stranger names under ``rule``
    (default: the model's open-set default) and under the model's 1:1 threshold alone."""
    from face_perception.gallery import Gallery
    from face_perception.open_set import default_rule
    from face_perception.recognition.pair_eval import _embed_files
    from face_perception.recognition.photo_faces import image_folder
    from face_perception.recognition.recognizer import model_id_of

    enrol, mated, strangers = split_image_folder(image_folder(folder), enroll, known_fraction,
                                                 seed)
    files = sorted({f for fs in enrol.values() for f in fs} | {f for _, f in mated}
                   | set(strangers))
    emb = _embed_files(detector, embedder, files)
    gallery = Gallery(model_id_of(embedder.meta), int(embedder.meta.embedding_size))
    for ident, fs in enrol.items():
        got = [f for f in fs if f in emb]
        if got:
            gallery.add(ident, np.stack([emb[f] for f in got]), sources=got)
    if len(gallery) == 0:
        raise ValueError(f"{folder}: no face found in any enrolment photo")
    mated_e = [(i, emb[f]) for i, f in mated if f in emb and i in gallery]
    stranger_e = np.array([emb[f] for f in strangers if f in emb], np.float32)
    scores = open_set_scores(gallery, mated_e, stranger_e, mode)
    rule = rule or default_rule(embedder.meta)
    one_to_one = OpenSetRule(float(embedder.meta.threshold), 0.0)
    out = {"dataset": str(folder), "model": embedder.meta.name, "mode": mode,
           "enroll_per_identity": enroll, "seed": seed,
           "gallery_identities": len(gallery), "gallery_samples": gallery.num_samples,
           "mated_probes": scores.num_mated, "nonmated_probes": scores.num_nonmated,
           "no_face": sorted(set(files) - set(emb)),
           "rank1": rank1_rate(scores),
           "fnir_at_fpir": fnir_at_fpir(scores, margin=rule.margin),
           "fnir_at_fpir_no_margin": fnir_at_fpir(scores, margin=0.0),
           "rule": outcome(scores, rule),
           "verification_threshold_only": outcome(scores, one_to_one),
           "look_alikes": [list(t) for t in look_alikes(gallery, rule.threshold, mode)]}
    if det_path is not None:
        out["det_png"] = str(save_det_plot(scores, det_path, rule.margin, rule,
                                           title=Path(folder).name or "DET"))
    return out


def calibrate_gallery(gallery, meta, mated: Sequence[tuple], strangers, target_fpir: float,
                      mode: str = "sample") -> dict:
    """Calibrate and store (``gallery.set_open_set``) the open-set rule of ``gallery``.

    mated: [(enrolled identity, embedding)] of photos of enrolled people that are not enrolled;
    strangers: (N, D) embeddings of people not in the gallery; meta: the model's ModelMeta (its
    1:1 threshold is the floor). Returns the stored dict (threshold, margin, evidence).
    """
    unknown = sorted({name for name, _ in mated if name not in gallery})
    if unknown:
        raise ValueError(f"photos given for identities not in the gallery: {unknown}")
    scores = open_set_scores(gallery, list(mated), np.asarray(strangers, np.float32), mode)
    result = calibrate_rule(scores, target_fpir, floor=float(meta.threshold))
    result["evidence"]["mode"] = mode
    result["model"] = getattr(meta, "name", None)
    gallery.set_open_set(result)
    return result


def calibrate_gallery_from_photos(gallery, detector, embedder, genuine_folder, stranger_paths,
                                  target_fpir: float, mode: str = "sample",
                                  tracks: bool = False) -> dict:
    """``calibrate_gallery`` from photos: ``genuine_folder`` an ImageFolder whose sub-folders
    are enrolled identities (photos not enrolled), ``stranger_paths`` image files or folders
    (searched recursively) of people not enrolled. Adds "no_face" to the result. With
    ``tracks`` also the track evidence model (``calibrate_tracks``) from the stranger photos
    seen through camera effects, each photo counted as one person ("tracks" in the result)."""
    from face_perception.recognition.pair_eval import _embed_files
    from face_perception.recognition.photo_faces import IMAGE_SUFFIXES, image_folder

    tree = image_folder(genuine_folder)
    strangers = []
    for p in map(Path, stranger_paths):
        if p.is_dir():
            strangers += sorted(str(f) for f in p.rglob("*")
                                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.is_file():
            strangers.append(str(p))
        else:
            raise FileNotFoundError(f"stranger photos not found: {p}")
    mated_files = [(name, str(f)) for name, files in tree.items() for f in files]
    emb = _embed_files(detector, embedder, sorted({f for _, f in mated_files} | set(strangers)))
    mated = [(name, emb[f]) for name, f in mated_files if f in emb]
    stranger_e = np.array([emb[f] for f in strangers if f in emb], np.float32)
    result = calibrate_gallery(gallery, embedder.meta, mated,
                               stranger_e.reshape(-1, gallery.embedding_size), target_fpir, mode)
    no_face = sorted(({f for _, f in mated_files} | set(strangers)) - set(emb))
    if tracks:
        from face_perception.imageio import read_image_bgr

        views = stranger_views(gallery, detector, embedder,
                               [(f, read_image_bgr(f)) for f in strangers if f in emb], mode=mode)
        result = {**gallery.open_set, "tracks": calibrate_tracks(gallery, embedder.meta, views,
                                                                 target_fpir)}
    return {**result, "no_face": no_face}


def stranger_views(gallery, detector, embedder, strangers, effects=None,
                   mode: str = "sample"):
    """StrangerViews: each stranger photo (``strangers``: [(person, BGR image)]) seen through
    real camera effects (open_set_views.CALIBRATION_EFFECTS: size, blur, motion, JPEG, turn)
    on a 640x480 frame, detected again, embedded, its best gallery similarity and quality."""
    from face_perception.detection.box_utils import box_iou
    from face_perception.recognition.face_quality import quality_score
    from face_perception.recognition.open_set_evidence import StrangerViews
    from face_perception.recognition.open_set_views import CALIBRATION_EFFECTS, place_face

    effects = CALIBRATION_EFFECTS if effects is None else effects
    views = StrangerViews()
    for person, image in strangers:
        found = detector.detect(image)
        if not found:
            continue
        box = max(found, key=lambda f: f.width * f.height).box
        for effect in effects:
            frame, placed = place_face(image, box, effect)
            faces = detector.detect(frame)
            if not faces:
                continue
            iou = box_iou([placed], [f.box for f in faces])[0]
            j = int(np.argmax(iou))
            if iou[j] < 0.3:
                continue
            emb = embedder.embed_faces(frame, [faces[j]])
            best = gallery.search(emb, k=1, mode=mode)[0][0][1]
            views.add(person, best, quality_score(frame, faces[j]))
    return views


def calibrate_tracks(gallery, meta, views, target_fpir: float) -> dict:
    """The track evidence model (open_set_evidence.EvidenceModel) for ``gallery`` from
    strangers' views (``stranger_views``), stored in the gallery's open-set entry under
    "tracks" (the gallery needs a calibrated rule first). Bands with views of fewer than 3
    strangers keep the model's shipped statistics."""
    from face_perception.recognition.open_set_evidence import (
        EvidenceModel,
        evidence_model_for,
        fit_bands,
    )

    if gallery.open_set is None:
        raise ValueError("calibrate the gallery's open-set rule first (calibrate_gallery)")
    fallback = evidence_model_for(meta, None)
    bands = fit_bands(views, fallback)
    model = EvidenceModel(bands, target_fpir=target_fpir,
                          min_similarity=float(getattr(meta, "threshold", None) or -1.0),
                          source=f"gallery calibrate: {len(set(views.person))} strangers, "
                                 f"{len(views.similarity)} views")
    gallery.set_open_set({**gallery.open_set, "tracks": model.to_dict()})
    return model.to_dict()
