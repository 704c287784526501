"""The pipeline's parts from settings: one place that turns a mapping of values (the nodes'
parameters, the CLI's options) into a Detector, a FaceTracker, a Recognizer with its gallery and
the FacePipeline over them.

Settings use the nodes' parameter names (docs/ros.md#parameters); the CLI maps its options onto
them. Sentinels of the parameters are understood: ``threshold < 0`` and ``margin < 0`` mean
"not set" (the gallery's calibrated value, else the model's), and ``score_threshold < 0`` the
backbone's own, as None does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional


def build_detector(settings: Mapping[str, Any]):
    """A Detector from ``backend``, ``device`` and the optional detector settings."""
    from face_perception.detection import Detector
    from face_perception.onnx.session import usable_cores

    scales = [float(s) for s in settings.get("scales", [1.0])]
    return Detector(
        backbone=settings.get("backbone", "mnet"), backend=settings["backend"],
        device=settings["device"], model_path=settings.get("model_path") or None,
        score_threshold=score_threshold(settings.get("score_threshold")),
        nms_threshold=settings.get("nms_threshold", 0.4),
        target_size=settings.get("target_size", 640), max_size=settings.get("max_size", 640),
        scales=None if scales == [1.0] else scales, flip=settings.get("flip", False),
        max_faces=settings.get("max_faces", 0),
        num_threads=settings.get("num_threads") or usable_cores(),
        calibration=settings.get("calibration") or None)


def score_threshold(value) -> Optional[float]:
    """A detector score threshold from settings: a negative value or None is the backbone's own
    (``detection.config.DEFAULT_SCORE_THRESHOLDS``)."""
    return unset_if(value, lambda v: v < 0.0)


def build_tracker(settings: Mapping[str, Any]):
    """A FaceTracker from the ``track_*`` settings, or None when ``tracking`` is off."""
    from face_perception.tracking import FaceTracker, TrackerConfig

    if not settings["tracking"]:
        return None
    return FaceTracker(TrackerConfig(
        high_score=settings["track_high_score"], new_track_score=settings["track_new_score"],
        match_iou=settings["track_match_iou"], low_match_iou=settings["track_low_match_iou"],
        confirm_hits=settings["track_confirm_hits"], max_age=settings["track_max_age"],
        scene_cut=settings["track_scene_cut"] or None))


# Settings of the tracks' naming rule (tracking.IdentityConfig) and how long a sender's track ids
# are trusted: the recognizer node's parameters (the detector node names nobody).
IDENTITY_SETTINGS = {"identity_min_observations": "min_observations",
                     "identity_min_agreement": "min_agreement",
                     "identity_switch_after": "switch_after",
                     "identity_embed_period": "embed_period"}


def build_pipeline(settings: Mapping[str, Any], detector=None, recognizer=None):
    """A FacePipeline with the tracker of the ``track_*`` settings and, where the settings hold
    them, the ``identity_*`` naming rule and ``upstream_max_age`` (defaults otherwise).
    ``detector`` / ``recognizer``: None where they come with each frame (the nodes' models)."""
    from face_perception.pipeline.frame import FacePipeline
    from face_perception.tracking import IdentityConfig

    identity = None
    if any(key in settings for key in IDENTITY_SETTINGS):
        identity = IdentityConfig(**{field: settings[key]
                                     for key, field in IDENTITY_SETTINGS.items()})
    extra = {"upstream_max_age": settings["upstream_max_age"]} \
        if "upstream_max_age" in settings else {}
    return FacePipeline(detector, recognizer, build_tracker(settings), identity, **extra)


@dataclass(frozen=True)
class RecognitionSetup:
    """Everything identification needs, swapped as a whole: embedder, detector (landmarks for
    bare boxes), gallery and the Recognizer over them."""

    embedder: Any
    detector: Any
    recognizer: Any
    gallery: Any
    gallery_path: str
    gallery_stamp: Optional[int]  # mtime_ns of the gallery index file when it was read
    gallery_note: str  # why there is no gallery ('' when there is one)

    @property
    def names(self) -> list[str]:
        return list(self.gallery.names) if self.gallery is not None else []


def gallery_stamp(path: str) -> Optional[int]:
    """mtime_ns of the gallery's index file (renamed last by Gallery.save), None if missing."""
    if not path:
        return None
    from face_perception.gallery import Gallery

    try:
        return Gallery.index_path(Path(path).expanduser()).stat().st_mtime_ns
    except OSError:
        return None


def unset_if(value, unset) -> Optional[float]:
    """A number from settings, or None where it is absent or ``unset`` says it is a sentinel."""
    return None if value is None or unset(float(value)) else float(value)


def build_recognizer(settings: Mapping[str, Any], embedder=None, detector=None,
                     strict: bool = True, require_gallery: bool = False) -> RecognitionSetup:
    """Build (or reuse) the embedder and detector, read the gallery, make the Recognizer.

    settings: ``model``, ``backend``, ``device``, ``gallery_path`` and optionally
    ``num_threads``, ``calibration``, ``threshold``, ``margin`` (and the detector settings of
    ``build_detector`` when no ``detector`` is given; its backend follows the embedder's as
    ``int8.detector_backend_for`` says).
    A missing or empty gallery gives a setup that knows nobody (with a note) unless
    ``require_gallery`` (the CLI: a named file must exist; Gallery.load's error). A gallery that
    exists but cannot be used (damaged, other model) raises when ``strict``, else gives a setup
    without gallery whose note says why (a node starting up still runs and reports every face
    as unknown).
    """
    from face_perception.onnx.session import usable_cores
    from face_perception.recognition import Embedder, Recognizer
    from face_perception.recognition.int8 import detector_backend_for
    from face_perception.recognition.recognizer import open_gallery_file

    if embedder is None:
        embedder = Embedder(model=settings["model"], backend=settings["backend"],
                            device=settings["device"],
                            num_threads=settings.get("num_threads") or usable_cores(),
                            calibration=settings.get("calibration") or None)
    if detector is None:
        detector = build_detector(
            {**settings, "backend": detector_backend_for(settings["backend"])})
    path = str(settings.get("gallery_path") or "").strip()
    stamp = gallery_stamp(path)
    gallery, note = None, ""
    if not path:
        note = "no gallery_path set"
    elif stamp is None and not require_gallery:
        note = f"gallery {path} not found"
    else:
        try:
            gallery = open_gallery_file(path, embedder.meta, create=False)
        except (ValueError, OSError) as exc:  # GalleryError is a ValueError
            if strict or require_gallery:
                raise
            gallery, note = None, f"gallery {path} not usable ({exc})"
        if gallery is not None and len(gallery) == 0:
            note = f"gallery {path} is empty"
    threshold = unset_if(settings.get("threshold"), lambda v: v < 0.0)
    margin = unset_if(settings.get("margin"), lambda v: v < 0.0)
    recognizer = Recognizer(embedder, gallery, threshold=threshold, margin=margin,
                            detector=detector)
    return RecognitionSetup(embedder, detector, recognizer, gallery, path, stamp, note)
