"""Five-point similarity alignment: transform estimation, warping, templates."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from face_perception.alignment import (
    ARCFACE_TEMPLATE_112,
    DLIB_TEMPLATE_150,
    align_to_template,
    dlib_chip_pixels,
    dlib_chip_template,
    estimate_similarity,
    template_transform,
    transform_points,
    warp_between_templates,
    warp_similarity,
)
from test.dlib_reference import DLIB_5PT_UNIT


def similarity(scale, angle_deg, tx, ty):
    a = math.radians(angle_deg)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx],
                     [scale * math.sin(a), scale * math.cos(a), ty]])


def test_estimate_similarity_recovers_an_exact_similarity():
    m = similarity(1.7, 23.0, 40.0, -12.5)
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    dst = transform_points(src, m)
    np.testing.assert_allclose(estimate_similarity(src, dst), m, atol=1e-9)


def test_estimate_similarity_never_reflects():
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    mirrored = src * [-1, 1]  # a left-right mirror cannot be reached by rotation and scale
    m = estimate_similarity(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose(m[0, 0], m[1, 1], atol=1e-9)  # rotation+scale block
    np.testing.assert_allclose(m[0, 1], -m[1, 0], atol=1e-9)


def test_estimate_similarity_is_least_squares_under_noise():
    rng = np.random.default_rng(0)
    m = similarity(0.6, -8.0, 5.0, 9.0)
    src = rng.uniform(0, 200, (5, 2))
    dst = transform_points(src, m) + rng.normal(0, 0.5, (5, 2))
    fit = estimate_similarity(src, dst)
    residual = np.linalg.norm(transform_points(src, fit) - dst)
    # no nearby similarity fits better
    for delta in (similarity(1.001, 0.0, 0.0, 0.0), similarity(1.0, 0.1, 0.0, 0.0)):
        worse = np.vstack([fit, [0, 0, 1]]) @ np.vstack([delta, [0, 0, 1]])
        assert np.linalg.norm(transform_points(src, worse[:2]) - dst) >= residual


def test_align_to_template_puts_landmarks_on_the_template():
    # Draw five dots, place them with a known similarity, align back and find the dots.
    canvas = np.zeros((400, 500, 3), np.uint8)
    m = similarity(2.5, 15.0, 120.0, 60.0)
    landmarks = transform_points(ARCFACE_TEMPLATE_112, m)
    for x, y in landmarks:
        cv2.circle(canvas, (int(round(x)), int(round(y))), 6, (255, 255, 255), -1)
    chip = align_to_template(canvas, landmarks, ARCFACE_TEMPLATE_112, 112)
    assert chip.shape == (112, 112, 3) and chip.dtype == np.uint8
    for x, y in ARCFACE_TEMPLATE_112:
        assert chip[int(round(y)), int(round(x))].min() > 200


def test_align_accepts_width_height_and_refuses_bad_input():
    img = np.zeros((100, 100, 3), np.uint8)
    assert align_to_template(img, ARCFACE_TEMPLATE_112, ARCFACE_TEMPLATE_112,
                             (96, 112)).shape == (112, 96, 3)
    with pytest.raises(ValueError, match="landmarks must be"):
        align_to_template(img, np.zeros(10), ARCFACE_TEMPLATE_112, 112)
    with pytest.raises(ValueError, match="non-finite"):
        align_to_template(img, np.full((5, 2), np.nan), ARCFACE_TEMPLATE_112, 112)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        align_to_template(np.zeros((100, 100), np.uint8), ARCFACE_TEMPLATE_112,
                          ARCFACE_TEMPLATE_112, 112)
    with pytest.raises(ValueError, match="same point"):
        estimate_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match="chip size must be positive"):
        align_to_template(img, ARCFACE_TEMPLATE_112, ARCFACE_TEMPLATE_112, 0)


def test_dlib_template_is_consistent_with_dlibs_own_five_point_constants():
    # Our eye centres lie between dlib's eye-corner points; our nose tip lies above dlib's
    # bottom-of-nose point on the face's axis.
    corners = dlib_chip_pixels(DLIB_5PT_UNIT, 150, 0.25)
    left_eye = (corners[2] + corners[3]) / 2
    right_eye = (corners[0] + corners[1]) / 2
    assert np.linalg.norm(DLIB_TEMPLATE_150[0] - left_eye) < 1.5
    assert np.linalg.norm(DLIB_TEMPLATE_150[1] - right_eye) < 1.5
    assert DLIB_TEMPLATE_150[2][1] < corners[4][1] and abs(DLIB_TEMPLATE_150[2][0] - 74) < 1
    # symmetric about the vertical centre line of the mean face
    assert DLIB_TEMPLATE_150[0][0] + DLIB_TEMPLATE_150[1][0] == pytest.approx(
        2 * DLIB_TEMPLATE_150[2][0], abs=0.01)
    np.testing.assert_allclose(dlib_chip_template(150, 0.25), DLIB_TEMPLATE_150)


def test_dlib_chip_pixels_follow_dlibs_extraction_convention():
    # dlib maps chip pixels 0 and size-1 to the edges of the fitted box: the centre of the
    # fit (75, 75) lands on pixel 74.5 and distances shrink by 149/150.
    np.testing.assert_allclose(dlib_chip_pixels([[0.5, 0.5]], 150, 0.25), [[74.5, 74.5]])
    np.testing.assert_allclose(dlib_chip_pixels([[-0.25, -0.25]], 150, 0.25), [[0.0, 0.0]])
    np.testing.assert_allclose(dlib_chip_pixels([[1.25, 1.25]], 150, 0.25), [[149.0, 149.0]])


def test_fit_direction_changes_only_the_scale():
    rng = np.random.default_rng(1)
    landmarks = transform_points(ARCFACE_TEMPLATE_112, similarity(3.0, 10.0, 50.0, 20.0))
    landmarks = landmarks + rng.normal(0, 4.0, landmarks.shape)  # imperfect landmarks
    chip_fit = template_transform(landmarks, ARCFACE_TEMPLATE_112, "chip")
    image_fit = template_transform(landmarks, ARCFACE_TEMPLATE_112, "image")
    s_chip = np.sqrt(np.linalg.det(chip_fit[:, :2]))
    s_image = np.sqrt(np.linalg.det(image_fit[:, :2]))
    assert s_image > s_chip  # least squares in the chip shrinks the face (regression dilution)
    np.testing.assert_allclose(chip_fit[:, :2] / s_chip, image_fit[:, :2] / s_image, atol=1e-9)
    # both map the landmarks' centroid onto the template's centroid
    for m in (chip_fit, image_fit):
        np.testing.assert_allclose(transform_points(landmarks.mean(axis=0, keepdims=True), m),
                                   ARCFACE_TEMPLATE_112.mean(axis=0, keepdims=True), atol=1e-4)
    with pytest.raises(ValueError, match="fit must be one of"):
        template_transform(landmarks, ARCFACE_TEMPLATE_112, "both")


def test_antialiasing_removes_moire_from_large_faces():
    # A fine stripe pattern shrunk 4x must come out as its average grey; plain bilinear
    # sampling hits only every fourth column and returns white.
    stripes = np.zeros((1200, 1200, 3), np.uint8)
    stripes[:, ::2] = 255
    m = np.array([[0.25, 0.0, 0.0], [0.0, 0.25, 0.0]])
    smooth = warp_similarity(stripes, m, 150, antialias=True)
    aliased = warp_similarity(stripes, m, 150, antialias=False)
    assert smooth[10:-10, 10:-10].std() < 3 and abs(smooth[10:-10, 10:-10].mean() - 127) < 3
    assert abs(aliased[10:-10, 10:-10].mean() - 127) > 50
    # the pyramid path keeps the geometry: a dot stays where the transform puts it
    dot = np.zeros((1200, 1200, 3), np.uint8)
    cv2.circle(dot, (601, 401), 12, (255, 255, 255), -1)
    chip = warp_similarity(dot, m, 300)
    ys, xs = np.nonzero(chip[..., 0] > 60)
    assert abs(xs.mean() - 601 * 0.25) < 0.5 and abs(ys.mean() - 401 * 0.25) < 0.5


def test_warp_between_templates_moves_template_points_exactly():
    # A 112 ArcFace chip with dots on its template, re-aligned into dlib's geometry.
    chip = np.zeros((112, 112, 3), np.uint8)
    for x, y in ARCFACE_TEMPLATE_112:
        cv2.circle(chip, (int(round(x)), int(round(y))), 3, (0, 255, 0), -1)
    out = warp_between_templates(chip, ARCFACE_TEMPLATE_112, DLIB_TEMPLATE_150, 150)
    assert out.shape == (150, 150, 3)
    m = estimate_similarity(ARCFACE_TEMPLATE_112, DLIB_TEMPLATE_150)
    for x, y in transform_points(ARCFACE_TEMPLATE_112, m):
        assert out[int(round(y)), int(round(x)), 1] > 150
    # ArcFace's crop ends above the chin in dlib's geometry: the rows below it stay black
    gray = warp_between_templates(np.full((112, 112, 3), 128, np.uint8), ARCFACE_TEMPLATE_112,
                                  DLIB_TEMPLATE_150, 150)
    assert gray[5:125, 5:145].min() > 0 and gray[140:].max() == 0
    stack = warp_between_templates(np.stack([chip, chip]), ARCFACE_TEMPLATE_112,
                                   DLIB_TEMPLATE_150, (150, 150))
    assert stack.shape == (2, 150, 150, 3)
    with pytest.raises(ValueError, match="uint8"):
        warp_between_templates(chip.astype(np.float32), ARCFACE_TEMPLATE_112,
                               DLIB_TEMPLATE_150, 150)
