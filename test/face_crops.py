"""Real face crops for dataset tests: the shipped photos with the detector's five points, and
augmented "loose crops" of them (random scale, rotation, shift, brightness) whose landmarks are
moved with the pixels, so a test can write any benchmark's files with true landmarks."""
from __future__ import annotations

import functools
import math
from pathlib import Path

import cv2
import numpy as np

PEOPLE = {"obama": ("obama.jpg", "obama2.jpg", "obama3.jpg"), "biden": ("biden.jpg",)}


@functools.cache
def detected_faces(photos: Path) -> dict:
    """{photo file name: (BGR image, 5x2 landmarks of its largest face)} (detector run once)."""
    from face_perception.detection import Detector
    from face_perception.imageio import read_image_bgr

    detector = Detector()
    out = {}
    for files in PEOPLE.values():
        for name in files:
            image = read_image_bgr(photos / name)
            faces = detector.detect(image)
            face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
            out[name] = (image, np.asarray(face.landmarks, np.float64))
    return out


def augmented_crop(image, landmarks, rng, size: int = 200):
    """A ``size`` square loose crop of the face at a random scale (eye distance 45..75 px),
    rotation (+-12 degrees) and offset, with brightness/contrast jitter. Returns (crop BGR,
    its 5x2 landmarks in crop pixels)."""
    lm = np.asarray(landmarks, np.float64)
    eye_dist = np.linalg.norm(lm[1] - lm[0])
    scale = rng.uniform(45, 75) / eye_dist
    angle = rng.uniform(-12, 12)
    centre = lm.mean(axis=0)
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale)
    m[:, 2] += np.array([size / 2, size / 2]) - centre + rng.uniform(-10, 10, 2)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_REFLECT)
    gain, bias = rng.uniform(0.8, 1.2), rng.uniform(-20, 20)
    crop = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
    return crop, lm @ m[:, :2].T + m[:, 2]


def eye_angle(landmarks) -> float:
    lm = np.asarray(landmarks)
    return math.degrees(math.atan2(lm[1, 1] - lm[0, 1], lm[1, 0] - lm[0, 0]))
