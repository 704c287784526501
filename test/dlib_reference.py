"""dlib's own face pipeline on the test photos, as the reference for parity tests (test-only).

dlib (the ``dlib-bin`` wheel) is used only here: the package itself never imports it.
"""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

# dlib's own 5-point chip constants (eye corners, bottom of the nose) from get_face_chip_details
DLIB_5PT_UNIT = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                          [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                          [0.4901123135679, 0.6277975316475]])

PHOTOS = ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg", "obama_partial_face.jpg")


@functools.cache
def _dlib_models():
    import dlib

    from face_perception.recognition.pretrained import dlib_model_file

    return (dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat"))),
            dlib.face_recognition_model_v1(str(dlib_model_file())))


@functools.cache
def dlib_reference(photos: Path, photo: str):
    """For the largest face of ``photo``: the RGB image, dlib's 5 landmarks, dlib's 150x150
    chip (RGB, ``get_face_chip(img, shape, 150, 0.25)``) and dlib's descriptor of that chip."""
    import dlib

    detector, predictor, model = _dlib_models()
    img = dlib.load_rgb_image(str(Path(photos) / photo))
    dets = detector(img, 0) or detector(img, 1)
    assert dets, f"dlib found no face in {photo}"
    det = max(dets, key=lambda r: r.area())
    shape = predictor(img, det)
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
    chip = np.asarray(dlib.get_face_chip(img, shape, 150, 0.25))
    descriptor = np.array(model.compute_face_descriptor(chip), np.float64)
    return img, points, chip, descriptor
