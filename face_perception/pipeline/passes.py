"""A whole input through FacePipeline: the identity mode a driver can use, and the one-pass (live)
or two-pass (offline) run over a source that can be read again.

``face-perception video`` and ``face-perception bag`` only read, convert and write around these;
the nodes see one frame at a time and stay live.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional

from face_perception.pipeline.frame import IDENTITY_MODES, FrameResult


def identity_mode_for(requested: Optional[str], tracking: bool,
                      rereadable: bool) -> tuple[str, str]:
    """(mode to run, name to record in the outputs) for a driver's request.

    requested: "live", "offline" or None (offline when the input can be read twice, else live).
    Without tracking every frame is judged alone: there is no track evidence to look ahead to,
    so it runs live and is recorded as "single-frame". A camera cannot be read twice, so
    offline on it is refused (ValueError).
    """
    if requested is not None and requested not in IDENTITY_MODES:
        raise ValueError(f"identity_mode must be 'live' or 'offline', got {requested!r}")
    if not tracking:
        return "live", "single-frame"
    mode = requested or ("offline" if rereadable else "live")
    if mode == "offline" and not rereadable:
        raise ValueError("--identity-mode offline needs a video file (a camera cannot be read "
                         "twice); use live")
    return mode, mode


class PassFrame(NamedTuple):
    """One input frame after the run: ``result`` is None when ``decode`` gave no image (the
    driver counts it); ``seconds`` is the decode + model time spent on it (0 when undecodable)."""

    index: int
    stamp_ns: int
    source: Any
    result: Optional[FrameResult]
    seconds: float


def run_passes(pipeline, read_frames: Callable[[], Iterable[tuple[int, Any]]],
               decode: Optional[Callable[[Any], Any]] = None,
               attach_image: bool = True,
               progress: Optional[Callable[[], None]] = None) -> Iterator[PassFrame]:
    """Every frame of a source through ``pipeline``, in order, as PassFrames.

    read_frames(): a fresh iterable of (stamp_ns, source) per call; offline calls it twice.
    decode(source): the frame's image, or None for an undecodable one (default: the source is
    the image). Live: one pass, each frame processed as it is read. Offline: a first pass keeps
    every result without pixels, ``offline_names`` decides each track's name, and a second read
    yields the decided results (stamps from the first pass), with the frame's image attached
    again when ``attach_image``; it stops early if the source gives fewer frames the second time.
    progress() is called once per frame and pass (``pipeline.passes`` passes in all).
    """
    decode = decode if decode is not None else _same
    if pipeline.identity_mode != "offline":
        for index, (stamp, source) in enumerate(read_frames()):
            result, seconds = _process(pipeline, decode, source, stamp)
            yield PassFrame(index, stamp, source, result, seconds)
            _tick(progress)
        return
    first = []  # (stamp, result without pixels or None, seconds) per frame
    for stamp, source in read_frames():
        result, seconds = _process(pipeline, decode, source, stamp)
        first.append((stamp, None if result is None else result.without_image(), seconds))
        _tick(progress)
    named = iter(pipeline.offline_names([r for _, r, _ in first if r is not None]))
    decided = [(s, None if r is None else next(named), t) for s, r, t in first]
    for index, ((stamp, result, seconds), (_, source)) in enumerate(zip(decided, read_frames())):
        if result is not None and attach_image:
            result.image = decode(source)  # decoded fine in the first pass
        yield PassFrame(index, stamp, source, result, seconds)
        _tick(progress)


def _process(pipeline, decode, source, stamp: int) -> tuple[Optional[FrameResult], float]:
    start = time.perf_counter()
    image = decode(source)
    if image is None:
        return None, 0.0
    result = pipeline.process(image, stamp)
    return result, time.perf_counter() - start


def _same(source):
    return source


def _tick(progress) -> None:
    if progress is not None:
        progress()


__all__ = ["PassFrame", "identity_mode_for", "run_passes"]
