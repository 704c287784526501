"""Five-point face alignment: similarity transforms onto a model's landmark template.

Landmarks are 5x2 (x, y) in the order left eye, right eye, nose tip, left mouth corner, right
mouth corner, left/right as seen in the image (RetinaFace's order). A template gives the same
five points in the pixels of a model's input chip; :func:`align_to_template` warps an image so
that the face's landmarks land on it (least-squares similarity: rotation, uniform scale,
translation; never a reflection or shear).
"""
from __future__ import annotations

import math
from typing import Union

import cv2
import numpy as np

# The standard 112x112 ArcFace / InsightFace template (also used by MobileFaceNet, IR-xx, ...).
ARCFACE_TEMPLATE_112 = np.array([
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
], dtype=np.float32)

ARCFACE_CHIP_SIZE = 112  # the chip side ARCFACE_TEMPLATE_112 is given for


def arcface_template(width: int, height: Union[int, None] = None) -> np.ndarray:
    """ARCFACE_TEMPLATE_112 scaled to a ``width`` x ``height`` chip (square if no height), as
    training crops of that size are made."""
    height = width if height is None else height
    scale = np.array([width / ARCFACE_CHIP_SIZE, height / ARCFACE_CHIP_SIZE], np.float32)
    return ARCFACE_TEMPLATE_112 * scale


# dlib's mean face shape: points 17..67 of the 68-point iBUG annotation, in a unit square
# (dlib/image_transforms/interpolation.h, get_face_chip_details). Only the points the
# RetinaFace-style template needs are kept, under their 68-point indices.
_DLIB_MEAN_SHAPE = {
    30: (0.490127, 0.515625),  # nose tip
    36: (0.121737, 0.216423), 37: (0.187122, 0.178758), 38: (0.265825, 0.179852),
    39: (0.334606, 0.231733), 40: (0.260918, 0.245099), 41: (0.182743, 0.244077),
    42: (0.645647, 0.231733), 43: (0.714428, 0.179852), 44: (0.793132, 0.178758),
    45: (0.858516, 0.216423), 46: (0.79751, 0.244077), 47: (0.719335, 0.245099),
    48: (0.254149, 0.780233),  # mouth corner, image left
    54: (0.726104, 0.780233),  # mouth corner, image right
}


def dlib_chip_template(size: int = 150, padding: float = 0.25) -> np.ndarray:
    """Where RetinaFace-style landmarks fall in a chip made by ``dlib.get_face_chip(img, shape,
    size, padding)``.

    Derivation: dlib maps its mean face shape (unit square) into the chip by
    ``p_chip = (padding + p) / (1 + 2 * padding) * size``. RetinaFace's eye points are eye
    centres, so each eye is the mean of its six 68-point contour points (36-41, 42-47); the nose
    point is the tip (68-point 30), the mouth points are the corners (48, 54). dlib's own
    5-point model (eye corners + bottom of the nose) uses the same mean shape, so chips made
    this way match dlib's up to how well the two landmark detectors agree (tested on photos in
    test/test_alignment_dlib.py).
    """
    if size <= 0 or padding < 0:
        raise ValueError(f"need size > 0 and padding >= 0, got size={size}, padding={padding}")
    m = {k: np.array(v, dtype=np.float64) for k, v in _DLIB_MEAN_SHAPE.items()}
    unit = np.stack([
        np.mean([m[i] for i in range(36, 42)], axis=0),
        np.mean([m[i] for i in range(42, 48)], axis=0),
        m[30], m[48], m[54],
    ])
    return dlib_chip_pixels(unit, size, padding).astype(np.float32)


def dlib_chip_pixels(unit_points, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """Pixel positions in dlib's ``size`` chip of points given in dlib's unit mean-face square.

    dlib fits its similarity to ``q = (padding + p) / (1 + 2 padding) * size``, but then
    extracts the chip by mapping chip pixels 0 and size-1 onto the edges of a box of width
    ``size * scale`` centred on the image of q = size/2 (``chip_details``,
    ``extract_image_chips``). So a point fitted at q actually appears at pixel
    ``(size - 1) / 2 + (q - size / 2) * (size - 1) / size``: half a pixel up-left and 1/size
    smaller. Including that makes our chips land where dlib's do.
    """
    q = (padding + np.asarray(unit_points, dtype=np.float64)) / (1.0 + 2.0 * padding) * size
    return (size - 1) / 2.0 + (q - size / 2.0) * (size - 1) / size


DLIB_TEMPLATE_150 = dlib_chip_template(150, 0.25)

TEMPLATES = {
    "arcface_112": (ARCFACE_TEMPLATE_112, (112, 112)),
    "dlib_150_p025": (DLIB_TEMPLATE_150, (150, 150)),
}


def _points(points, name: str, min_points: int = 2) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < min_points:
        raise ValueError(f"{name} must be an (N>={min_points}, 2) array of points, got shape "
                         f"{arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values: {arr.tolist()}")
    return arr


def estimate_similarity(src_pts, dst_pts) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991, reflection excluded) taking ``src_pts``
    onto ``dst_pts``; returns the 2x3 float64 matrix for ``cv2.warpAffine``."""
    src = _points(src_pts, "src_pts")
    dst = _points(dst_pts, "dst_pts")
    if src.shape != dst.shape:
        raise ValueError(f"src_pts {src.shape} and dst_pts {dst.shape} differ in shape")
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    sc, dc = src - mu_s, dst - mu_d
    var_s = (sc ** 2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError(f"src_pts are all the same point: {src.tolist()}")
    cov = dc.T @ sc / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best fit would mirror: take a rotation
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / var_s)
    m = np.empty((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def _size(size: Union[int, tuple]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        w = h = int(size)
    else:
        w, h = (int(v) for v in size)
    if w <= 0 or h <= 0:
        raise ValueError(f"chip size must be positive, got {size}")
    return w, h


def _image(image: np.ndarray, name: str = "image") -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"{name} must be an HxWx3 uint8 array, got {shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {image.shape}")
    return image


def warp_similarity(image: np.ndarray, matrix: np.ndarray, size, antialias: bool = True
                    ) -> np.ndarray:
    """``cv2.warpAffine`` of a similarity ``matrix`` (image -> chip) into a ``size`` chip.

    Bilinear sampling alone aliases when the chip is much smaller than the face in the image
    (a 600-pixel face into a 150-pixel chip skips three of every four pixels). Like dlib's
    extract_image_chip, with ``antialias`` the face region is first halved with a Gaussian
    pyramid until the remaining warp shrinks by less than 2x.
    """
    w, h = _size(size)
    m = np.asarray(matrix, dtype=np.float64)
    scale = math.sqrt(abs(np.linalg.det(m[:, :2])))  # chip pixels per image pixel
    if antialias and scale < 0.5:
        # Crop the part of the image the chip sees (plus a filter margin), then shrink it.
        inv = cv2.invertAffineTransform(m)
        corners = transform_points([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], inv)
        margin = 4.0 / scale
        x0, y0 = np.floor(corners.min(axis=0) - margin).astype(int)
        x1, y1 = np.ceil(corners.max(axis=0) + margin).astype(int)
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, image.shape[1]), min(y1, image.shape[0])
        if x1 - x0 >= 8 and y1 - y0 >= 8:
            level = image[y0:y1, x0:x1]
            factor = 1
            while scale * factor * 2 <= 1.0 and min(level.shape[:2]) >= 8:
                level = cv2.pyrDown(level)  # output pixel i is centred on input pixel 2i
                factor *= 2
            m = np.hstack([m[:, :2] * factor, (m[:, :2] @ [x0, y0] + m[:, 2])[:, None]])
            image = level
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))


FITS = ("chip", "image")


def template_transform(landmarks, template, fit: str = "chip") -> np.ndarray:
    """The image -> chip similarity for ``landmarks`` and ``template``.

    Five real landmarks never fit a template exactly, and a least-squares similarity then
    depends on where the residuals are measured: ``fit='chip'`` fits image -> chip
    (InsightFace's ``norm_crop`` convention, what ArcFace-style models were trained on);
    ``fit='image'`` fits chip -> image and inverts it (dlib's ``get_face_chip_details``
    convention, a slightly larger face in the chip). Use what the model was trained with.
    """
    if fit == "chip":
        return estimate_similarity(landmarks, template)
    if fit == "image":
        return cv2.invertAffineTransform(estimate_similarity(template, landmarks))
    raise ValueError(f"fit must be one of {FITS}, got {fit!r}")


def align_to_template(image_bgr: np.ndarray, landmarks, template, size,
                      antialias: bool = True, fit: str = "chip") -> np.ndarray:
    """Warp ``image_bgr`` so that the 5 ``landmarks`` land on ``template``; returns the
    ``size`` (int or (w, h)) chip, HxWx3 uint8, same colour order as the input. Large faces
    are pre-shrunk with a Gaussian pyramid (``antialias``, see :func:`warp_similarity`);
    ``fit`` says where the least-squares error is measured (see :func:`template_transform`)."""
    image = _image(image_bgr, "image_bgr")
    lm = _points(landmarks, "landmarks")
    tp = _points(template, "template")
    if lm.shape != tp.shape:
        raise ValueError(f"landmarks {lm.shape} and template {tp.shape} differ in shape")
    return warp_similarity(image, template_transform(lm, tp, fit), size, antialias)


def warp_between_templates(chips: np.ndarray, src_template, dst_template, dst_size
                           ) -> np.ndarray:
    """Re-align chips that are already aligned to ``src_template`` (for example InsightFace
    .bin/.rec crops in ARCFACE_TEMPLATE_112) into another model's geometry.

    A plain resize would keep the wrong face placement and scale; this applies the similarity
    that maps one template onto the other. Parts of the target chip outside the source chip
    become black (ArcFace 112 -> dlib 150: the bottom ~18 rows, below the chin line of the
    ArcFace crop). ``chips`` is one HxWx3 chip or an NxHxWx3 stack; returns the same rank.
    """
    arr = np.asarray(chips)
    single = arr.ndim == 3
    stack = arr[None] if single else arr
    if stack.ndim != 4 or stack.shape[-1] != 3 or stack.dtype != np.uint8:
        raise ValueError(f"chips must be HxWx3 or NxHxWx3 uint8, got {arr.shape} {arr.dtype}")
    w, h = _size(dst_size)
    m = estimate_similarity(src_template, dst_template)
    out = np.stack([cv2.warpAffine(c, m, (w, h), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT) for c in stack])
    return out[0] if single else out


def transform_points(points, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = _points(points, "points", min_points=1)
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"matrix must be 2x3, got {m.shape}")
    return pts @ m[:, :2].T + m[:, 2]
