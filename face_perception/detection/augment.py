"""Training-time augmentation for RetinaFace: square crop, colour distortion, mirror, resize.

Follows the recipe of RetinaFace training (random square crops of 0.3-1.0 of the short side that
keep the faces whose centres stay inside, photometric distortion in HSV, horizontal flip, resize
to a square training size with a random interpolation, BGR mean subtraction). All randomness
comes from the ``numpy.random.Generator`` passed in, so a seeded run is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

MEAN_BGR = (104.0, 117.0, 123.0)
CROP_SCALES = (0.3, 0.45, 0.6, 0.8, 1.0)
# Landmark order is image-left eye, image-right eye, nose, image-left mouth, image-right mouth:
# a mirror image swaps the two eyes and the two mouth corners.
FLIP_ORDER = (1, 0, 2, 4, 3)
INTERPOLATIONS = (cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA, cv2.INTER_NEAREST,
                  cv2.INTER_LANCZOS4)


@dataclass
class Annotations:
    """Faces of one image: boxes (N,4) x1y1x2y2, landmarks (N,10), has_landmarks (N,) bool."""

    boxes: np.ndarray
    landmarks: np.ndarray
    has_landmarks: np.ndarray

    def select(self, mask: np.ndarray) -> Annotations:
        return Annotations(self.boxes[mask], self.landmarks[mask], self.has_landmarks[mask])

    def copy(self) -> Annotations:
        return Annotations(self.boxes.copy(), self.landmarks.copy(), self.has_landmarks.copy())


def random_square_crop(image: np.ndarray, ann: Annotations, rng: np.random.Generator,
                       tries: int = 250) -> tuple[np.ndarray, Annotations, bool]:
    """Crop a random square (scale of the short side from CROP_SCALES).

    Keeps the faces whose centres lie inside the crop, clipped to it; landmarks are shifted.
    Returns (image, annotations, cropped). After ``tries`` failures (no face centre inside) the
    input comes back unchanged with cropped=False, and the caller pads it to a square.
    """
    h, w = image.shape[:2]
    short = min(h, w)
    for _ in range(tries):
        side = int(rng.choice(CROP_SCALES) * short)
        if side < 1:
            continue
        left = int(rng.integers(0, w - side + 1))
        top = int(rng.integers(0, h - side + 1))
        roi = np.array([left, top, left + side, top + side], dtype=np.float32)
        centres = (ann.boxes[:, :2] + ann.boxes[:, 2:]) / 2
        inside = ((centres[:, 0] > roi[0]) & (centres[:, 1] > roi[1])
                  & (centres[:, 0] < roi[2]) & (centres[:, 1] < roi[3]))
        if not inside.any():
            continue
        kept = ann.select(inside).copy()
        kept.boxes[:, :2] = np.maximum(kept.boxes[:, :2], roi[:2]) - roi[:2]
        kept.boxes[:, 2:] = np.minimum(kept.boxes[:, 2:], roi[2:]) - roi[:2]
        lm = kept.landmarks.reshape(-1, 5, 2)
        lm[kept.has_landmarks] -= roi[:2]
        # Faces that shrink to nothing at the training size would only add unmatched targets.
        size = np.minimum(kept.boxes[:, 2] - kept.boxes[:, 0], kept.boxes[:, 3] - kept.boxes[:, 1])
        big = size > 0
        if not big.any():
            continue
        return image[top:top + side, left:left + side], kept.select(big), True
    return image, ann, False


def distort_colors(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast, saturation and hue (each applied with probability 1/2)."""
    img = image.astype(np.float32)

    def brightness(x):
        return x + rng.uniform(-32, 32) if rng.random() < 0.5 else x

    def contrast(x):
        return x * rng.uniform(0.5, 1.5) if rng.random() < 0.5 else x

    img = np.clip(brightness(img), 0, 255)
    contrast_first = rng.random() < 0.5
    if contrast_first:
        img = np.clip(contrast(img), 0, 255)
    hsv = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_BGR2HSV).astype(np.float32)
    if rng.random() < 0.5:
        hsv[:, :, 1] = np.clip(hsv[:, :, 1] * rng.uniform(0.5, 1.5), 0, 255)
    if rng.random() < 0.5:
        hsv[:, :, 0] = (hsv[:, :, 0] + rng.integers(-18, 19)) % 180  # OpenCV hue is 0..179
    img = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR).astype(np.float32)
    if not contrast_first:
        img = np.clip(contrast(img), 0, 255)
    return img.astype(np.uint8)


def mirror(image: np.ndarray, ann: Annotations) -> tuple[np.ndarray, Annotations]:
    """Flip horizontally; boxes and landmarks follow and left/right landmarks swap roles."""
    w = image.shape[1]
    out = ann.copy()
    out.boxes[:, 0] = w - ann.boxes[:, 2]
    out.boxes[:, 2] = w - ann.boxes[:, 0]
    lm = ann.landmarks.reshape(-1, 5, 2).copy()
    lm[:, :, 0] = np.where(ann.has_landmarks[:, None], w - lm[:, :, 0], lm[:, :, 0])
    out.landmarks = lm[:, FLIP_ORDER, :].reshape(-1, 10)
    return np.ascontiguousarray(image[:, ::-1]), out


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad bottom/right with the mean colour, so coordinates stay valid."""
    h, w = image.shape[:2]
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=image.dtype)
    out[:] = np.array(MEAN_BGR, dtype=np.float32).astype(image.dtype)
    out[:h, :w] = image
    return out


def to_network_input(image_bgr: np.ndarray) -> np.ndarray:
    """HxWx3 BGR uint8 -> 3xHxW float32 minus the BGR mean (the model's input convention)."""
    return (image_bgr.astype(np.float32) - np.array(MEAN_BGR, np.float32)).transpose(2, 0, 1)


class TrainTransform:
    """Image + annotations -> (3 x S x S float32 input, targets normalised to [0, 1]).

    Targets are a dict with ``boxes`` (N,4), ``landmarks`` (N,10) and ``has_landmarks`` (N,),
    coordinates divided by the square side so they match priors in [0, 1].
    """

    def __init__(self, size: int = 640, flip: bool = True, crop: bool = True,
                 distort: bool = True):
        if size < 32:
            raise ValueError(f"training size must be at least 32 pixels, got {size}")
        self.size = int(size)
        self.flip = flip
        self.crop = crop
        self.distort = distort

    def __call__(self, image: np.ndarray, ann: Annotations, rng: np.random.Generator
                 ) -> tuple[np.ndarray, dict]:
        ann = ann.copy()
        if self.crop and len(ann.boxes):
            image, ann, _ = random_square_crop(image, ann, rng)
        if self.distort:
            image = distort_colors(image, rng)
        if self.flip and rng.random() < 0.5:
            image, ann = mirror(image, ann)
        image = pad_to_square(image)
        side = image.shape[0]
        interp = INTERPOLATIONS[int(rng.integers(len(INTERPOLATIONS)))]
        image = cv2.resize(image, (self.size, self.size), interpolation=interp)
        boxes = ann.boxes / side
        lms = np.where(ann.has_landmarks[:, None], ann.landmarks / side, -1.0)
        targets = {"boxes": boxes.astype(np.float32),
                   "landmarks": lms.astype(np.float32),
                   "has_landmarks": ann.has_landmarks.astype(bool)}
        return to_network_input(image), targets
