"""A small face-recognition training set the training tests build themselves: augmented chips
of the shipped real photos (aligned with the real detector) plus synthetic identities."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template
from face_perception.imageio import read_image_bgr

REAL = {"obama": ("obama.jpg", "obama2.jpg", "obama3.jpg"), "biden": ("biden.jpg",)}


def real_chips(photos: Path, size: int) -> dict:
    """identity -> aligned chips (size x size, ArcFace template) of the shipped photos."""
    from face_perception.detection import Detector

    detector = Detector()
    template = ARCFACE_TEMPLATE_112 * (size / 112.0)
    out = {}
    for name, files in REAL.items():
        chips = []
        for f in files:
            image = read_image_bgr(photos / f)
            face = max(detector.detect(image), key=lambda f: f.score)
            chips.append(align_to_template(image, face.landmarks, template, (size, size)))
        out[name] = chips
    return out


def synthetic_face(identity: int, size: int) -> np.ndarray:
    """A face-like drawing whose colours, proportions and texture are fixed by ``identity``."""
    rng = np.random.default_rng(10_000 + identity)
    img = np.empty((size, size, 3), np.uint8)
    img[:] = rng.integers(20, 235, 3)
    texture = cv2.resize(rng.integers(0, 255, (4, 4, 3)).astype(np.uint8), (size, size),
                         interpolation=cv2.INTER_CUBIC)
    img = cv2.addWeighted(img, 0.6, texture, 0.4, 0)
    c = size / 2
    skin = tuple(int(v) for v in rng.integers(40, 250, 3))
    axes = (int(size * rng.uniform(0.28, 0.4)), int(size * rng.uniform(0.36, 0.46)))
    cv2.ellipse(img, (int(c), int(c)), axes, 0, 0, 360, skin, -1)
    eye_dx, eye_y = size * rng.uniform(0.12, 0.2), size * rng.uniform(0.36, 0.46)
    eye_r = max(2, int(size * rng.uniform(0.04, 0.08)))
    eye = tuple(int(v) for v in rng.integers(0, 120, 3))
    for sx in (-1, 1):
        cv2.circle(img, (int(c + sx * eye_dx), int(eye_y)), eye_r, eye, -1)
    mouth_y = int(size * rng.uniform(0.66, 0.76))
    mouth_w = int(size * rng.uniform(0.08, 0.18))
    cv2.line(img, (int(c) - mouth_w, mouth_y), (int(c) + mouth_w, mouth_y),
             tuple(int(v) for v in rng.integers(0, 160, 3)), max(1, size // 28))
    return img


def augment(chip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small shift, scale, rotation, brightness and noise."""
    size = chip.shape[0]
    m = cv2.getRotationMatrix2D((size / 2, size / 2), rng.uniform(-8, 8), rng.uniform(0.93, 1.07))
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * size
    out = cv2.warpAffine(chip, m, (size, size), borderMode=cv2.BORDER_REFLECT)
    out = out.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.normal(0, 6, out.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def build(root: Path, photos: Path, size: int = 64, synthetic: int = 10, per_identity: int = 10,
          held_out: int = 4, seed: int = 0, chips: dict = None):
    """Write ``root/train/<id>/*.png`` and ``root/val/<id>/*.png`` (other augmentations of the
    same identities, for verification pairs). Returns (train folder, val folder)."""
    rng = np.random.default_rng(seed)
    sources = dict(chips if chips is not None else real_chips(photos, size))
    for i in range(synthetic):
        sources[f"synthetic_{i:02d}"] = [synthetic_face(i, size)]
    for split, count in (("train", per_identity), ("val", held_out)):
        for name, base in sources.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                chip = augment(base[j % len(base)], rng)
                cv2.imwrite(str(folder / f"{j:03d}.png"), chip)
    return root / "train", root / "val"


if __name__ == "__main__":
    import sys

    from face_perception.data.sample_photos import sample_photos_dir as photos_dir

    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m test.training_data DIR  (writes DIR/train, DIR/val)")
    train, val = build(Path(sys.argv[1]), photos_dir(), size=64)
    print(train, val)
