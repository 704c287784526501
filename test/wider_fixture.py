"""A small WIDER-format face set built from the real test photos, for training and eval tests.

Each face of the shipped photos (box and 5 landmarks from our pretrained Detector) is cut out with
a margin and pasted, at a random scale, onto synthetic backgrounds (gradients, blurred noise,
shapes, and face-free strips of the photos). The paste geometry is known exactly, so the written
``label.txt`` boxes and landmarks are exact transforms of the detector's annotations on the
originals.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from face_perception.detection.wider import WiderSample, write_label_file

SOURCE_PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
MARGIN = 0.35  # face crop margin on each side, as a fraction of the face box size


@dataclass
class FacePatch:
    """A face cut from a photo: the patch and its face box / landmarks in patch pixels."""

    image: np.ndarray
    box: np.ndarray        # (4,) x1 y1 x2 y2
    landmarks: np.ndarray  # (5, 2)
    source: str


def cut_faces(photos: Path, detector) -> list[FacePatch]:
    """One patch per source photo: its highest-scoring face with a margin around it."""
    patches = []
    for name in SOURCE_PHOTOS:
        img = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)
        faces = detector.detect(img)
        if not faces:
            raise AssertionError(f"pretrained detector found no face in {name}")
        face = faces[0]
        x1, y1, x2, y2 = face.box
        mx, my = (x2 - x1) * MARGIN, (y2 - y1) * MARGIN
        h, w = img.shape[:2]
        cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
        cx2, cy2 = int(min(w, x2 + mx)), int(min(h, y2 + my))
        offset = np.array([cx1, cy1], np.float32)
        patches.append(FacePatch(img[cy1:cy2, cx1:cx2].copy(),
                                 face.box - np.tile(offset, 2),
                                 face.landmarks - offset, name))
    return patches


def _background(rng: np.random.Generator, h: int, w: int, photos_bg: list[np.ndarray]):
    kind = rng.integers(4)
    if kind == 0:  # colour gradient
        a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        img = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3))
    elif kind == 1:  # blurred colour noise
        small = rng.integers(0, 256, (max(h // 16, 2), max(w // 16, 2), 3)).astype(np.uint8)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == 2:  # flat colour with random shapes
        img = np.full((h, w, 3), rng.integers(0, 256, 3), np.uint8)
        for _ in range(6):
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            p = (int(rng.integers(w)), int(rng.integers(h)))
            if rng.random() < 0.5:
                cv2.circle(img, p, int(rng.integers(5, max(w // 4, 6))), colour, -1)
            else:
                q = (int(rng.integers(w)), int(rng.integers(h)))
                cv2.rectangle(img, p, q, colour, -1)
    else:  # a face-free strip of a real photo, resized
        src = photos_bg[int(rng.integers(len(photos_bg)))]
        img = cv2.resize(src, (w, h), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img, dtype=np.uint8)


def _photo_strips(photos: Path) -> list[np.ndarray]:
    strips = []
    for name in SOURCE_PHOTOS:
        img = cv2.imread(str(photos / name), cv2.IMREAD_COLOR)
        h = img.shape[0]
        strips.append(img[int(h * 0.85):])  # bottom of the portraits: clothes, no faces
    return strips


def compose_image(rng: np.random.Generator, patches: list[FacePatch], size: tuple[int, int],
                  face_sizes: tuple[int, int], max_faces: int, photos_bg: list[np.ndarray]):
    """One synthetic image with 1..max_faces non-overlapping pasted faces; returns (img, boxes,
    landmarks)."""
    h, w = size
    img = _background(rng, h, w, photos_bg)
    boxes, lms, taken = [], [], []
    for _ in range(int(rng.integers(1, max_faces + 1))):
        patch = patches[int(rng.integers(len(patches)))]
        face_w = patch.box[2] - patch.box[0]
        scale = rng.uniform(*face_sizes) / face_w
        ph, pw = patch.image.shape[:2]
        nh, nw = max(int(round(ph * scale)), 1), max(int(round(pw * scale)), 1)
        if nh >= h or nw >= w:
            continue
        for _attempt in range(20):
            x0, y0 = int(rng.integers(0, w - nw + 1)), int(rng.integers(0, h - nh + 1))
            rect = (x0, y0, x0 + nw, y0 + nh)
            if all(rect[2] <= r[0] or rect[0] >= r[2] or rect[3] <= r[1] or rect[1] >= r[3]
                   for r in taken):
                break
        else:
            continue
        taken.append(rect)
        resized = cv2.resize(patch.image, (nw, nh), interpolation=cv2.INTER_AREA)
        img[y0:y0 + nh, x0:x0 + nw] = resized
        # Exact geometry of the paste: scale by (nw/pw, nh/ph), then shift by (x0, y0).
        sx, sy = nw / pw, nh / ph
        boxes.append([patch.box[0] * sx + x0, patch.box[1] * sy + y0,
                      patch.box[2] * sx + x0, patch.box[3] * sy + y0])
        lms.append((patch.landmarks * np.array([sx, sy]) + np.array([x0, y0])).reshape(10))
    return (img, np.array(boxes, np.float32).reshape(-1, 4),
            np.array(lms, np.float32).reshape(-1, 10))


def build_split(folder: Path, photos: Path, patches: list[FacePatch], count: int, seed: int,
                size: tuple[int, int] = (240, 320), face_sizes: tuple[int, int] = (40, 100),
                max_faces: int = 3) -> list[WiderSample]:
    """Write ``folder/images/*.jpg`` and ``folder/label.txt``; returns the samples written."""
    rng = np.random.default_rng(seed)
    images = folder / "images" / "0--Synthetic"
    images.mkdir(parents=True, exist_ok=True)
    strips = _photo_strips(photos)
    samples = []
    for i in range(count):
        img, boxes, lms = compose_image(rng, patches, size, face_sizes, max_faces, strips)
        name = f"0--Synthetic/img_{i:03d}.png"
        cv2.imwrite(str(folder / "images" / name), img)
        samples.append(WiderSample(folder / "images" / name, boxes, lms,
                                   np.ones(len(boxes), bool), name=name))
    write_label_file(folder / "label.txt", samples)
    return samples


def build_wider_root(root: Path, photos: Path, detector, n_train: int = 16, n_val: int = 8
                     ) -> tuple[list[WiderSample], list[WiderSample]]:
    """``root/train`` and ``root/val`` in the RetinaFace layout; returns their samples."""
    patches = cut_faces(photos, detector)
    return (build_split(root / "train", photos, patches, n_train, seed=1),
            build_split(root / "val", photos, patches, n_val, seed=2))
