"""Validators of recognition settings (learner, training): each returns the clean value or raises
ValueError naming the parameter and the value it got."""
from __future__ import annotations

import math

import numpy as np


def choice(name, value, valid):
    if value not in valid:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, valid))}, got {value!r}")
    return value


def is_number(value) -> bool:
    """A finite int or float (numpy scalars included, bool excluded)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and \
        not isinstance(value, bool) and math.isfinite(float(value))


def positive_float(name, value) -> float:
    if not is_number(value) or float(value) <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    return float(value)


def float_range(name, value, low, high) -> float:
    """A number in [low, high) (``high`` None: no upper bound)."""
    if not is_number(value) or float(value) < low or (high is not None and float(value) >= high):
        bound = f"in [{low}, {high})" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a number {bound}, got {value!r}")
    return float(value)


def cosine_threshold(value) -> float:
    """A cosine similarity threshold in [-1, 1]; 0.0 means "the model's own"."""
    if not is_number(value) or not -1.0 <= float(value) <= 1.0:
        raise ValueError(f"threshold is a cosine similarity in [-1, 1] (0.0 = the model's "
                         f"own), got {value!r}")
    return float(value)


def int_at_least(name, value, low) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def boolean(name, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def size_pair(name, value) -> list:
    """[width, height]: two positive integers."""
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"{name} must be [width, height], got {value!r}") from None
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                              or v <= 0 for v in items):
        raise ValueError(f"{name} must be two positive integers, got {value!r}")
    return [int(v) for v in items]


def rgb_triple(name, value, low, high) -> list:
    """Three numbers (R, G, B) in [low, high] (``high`` None: no upper bound)."""
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"{name} must be 3 numbers (R, G, B), got {value!r}") from None
    if len(items) != 3 or not all(is_number(v) for v in items) or \
            any(float(v) < low or (high is not None and float(v) > high) for v in items):
        rng = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be 3 numbers {rng} (0..1 pixel units), got {value!r}")
    return [float(v) for v in items]


def lr_stages(value) -> list:
    """Iterations at which the learning rate drops: increasing non-negative integers."""
    try:
        items = list(value)
    except TypeError:
        raise ValueError(f"stages must be a list of iteration numbers, got {value!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0
           for v in items) or items != sorted(items):
        raise ValueError(f"stages must be increasing non-negative integers, got {value!r}")
    return [int(v) for v in items]




def backbone_geometry(backbone: str, input_size: list, embedding_size: int,
                      default_input_size=(112, 112), default_embedding_size: int = 512
                      ) -> tuple[list, int]:
    """The (input_size, embedding_size) a ``backbone`` can be built with.

    Published weights fix the geometry of some backbones (``FIXED_GEOMETRY``, e.g. dlib's
    150x150 128-d ResNet): the defaults give way to it, other explicit values are an error rather
    than a silently different model. IR/ResNet backbones have four stride-2 stages, so their
    chip sides must be multiples of 16 and at least 32.
    """
    from face_perception.recognition.backbones import FIXED_GEOMETRY

    fixed = FIXED_GEOMETRY.get(backbone)
    if fixed:
        if input_size not in (list(default_input_size), list(fixed["input_size"])):
            raise ValueError(f"backbone {backbone!r} takes {fixed['input_size']} "
                             f"chips, got input_size={input_size}")
        if embedding_size not in (default_embedding_size, fixed["embedding_size"]):
            raise ValueError(f"backbone {backbone!r} gives {fixed['embedding_size']}-d "
                             f"embeddings, got embedding_size={embedding_size}")
        input_size, embedding_size = list(fixed["input_size"]), fixed["embedding_size"]
    if backbone.startswith("ir") or backbone.startswith("resnet"):
        if any(v % 16 or v < 32 for v in input_size):
            raise ValueError(f"input_size for {backbone} must be multiples of 16 and "
                             f">= 32, got {input_size}")
    return input_size, embedding_size
