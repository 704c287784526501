"""Video clips for the enrolment tests and benchmark, made from the shipped real photos with real
camera effects: zoom, small shifts, motion blur, defocus, JPEG compression.

``views_clip``: one person standing still while the camera cuts between different photos of
them (different pose, light, expression): one track with several distinct views.
``switch_clip``: one place, obama and then biden (a cut without motion): one track, two people.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from test.tracking_scenes import RATE, Cutouts, scene


def camera(image: np.ndarray, i: int, seed: int = 0) -> np.ndarray:
    """Frame ``i`` through a cheap camera: every 5th frame motion-blurred, every 7th defocused,
    JPEG quality cycling 35..90 (deterministic per ``seed``)."""
    rng = np.random.default_rng(seed * 1000 + i)
    out = image
    if i % 5 == 4:
        k = np.zeros((1, 9), np.float32)
        k[0, :] = 1.0 / 9
        out = cv2.filter2D(out, -1, k)  # horizontal motion of 9 px during the exposure
    if i % 7 == 6:
        out = cv2.GaussianBlur(out, (0, 0), 1.5)
    quality = int(35 + (i * 11 + int(rng.integers(0, 5))) % 56)
    ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def clip_frames(cut: Cutouts, segments, seed: int = 0, bg: str = "a"):
    """Frames of ``segments`` [(person, frames)] shown one after the other at one place, with a
    slow zoom (face 95..135 px high) and a shake of a few pixels."""
    people = [p for p, n in segments for _ in range(n)]

    def place(i):
        rng = np.random.default_rng(seed * 7919 + i)
        dx, dy = rng.integers(-4, 5, size=2)
        return [(people[i], 320 + dx, 230 + dy, 95 + 40 * abs(np.sin(i / 9.0)))]
    frames = scene(cut, len(people), place, bg=bg)
    for i, f in enumerate(frames):
        f.image = camera(f.image, i, seed)
    return frames


def views_clip(cut: Cutouts, person_photos=("obama", "obama2", "obama"), per_view: int = 12,
               seed: int = 0):
    return clip_frames(cut, [(p, per_view) for p in person_photos], seed)


def switch_clip(cut: Cutouts, per_person: int = 12, seed: int = 1):
    return clip_frames(cut, [("obama", per_person), ("biden", per_person)], seed)


def write_video(frames, path: Path) -> Path:
    h, w = frames[0].image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), RATE, (w, h))
    assert writer.isOpened(), path
    for f in frames:
        writer.write(f.image)
    writer.release()
    return path
