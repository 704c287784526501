"""Input rules shared by the gallery store and its file format: the error type, identity names,
source labels and search modes."""
from __future__ import annotations

import json
import os
import unicodedata
from typing import List

SEARCH_MODES = ("mean", "sample")


class GalleryError(ValueError):
    """A gallery operation got bad input, or a gallery file is from another model or damaged."""


def check_name(name) -> None:
    if not isinstance(name, str):
        raise GalleryError(f"identity names must be strings, got {type(name).__name__} {name!r}")
    if not name.strip():
        raise GalleryError(f"identity name must not be empty or blank, got {name!r}")
    if not name.isprintable() and any(unicodedata.category(ch) == "Cc" for ch in name):
        raise GalleryError(f"identity name contains a control character: {name!r}")


def check_sources(sources, n: int) -> List[str]:
    """One source label per embedding ("" where none was given)."""
    if sources is None:
        return [""] * n
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    sources = [os.fspath(s) if isinstance(s, os.PathLike) else s for s in sources]
    if len(sources) != n or not all(isinstance(s, str) for s in sources):
        raise GalleryError(f"sources must be {n} strings (one per embedding), got {sources!r}")
    for s in sources:
        if "\x00" in s:
            raise GalleryError(f"source label contains a NUL character: {s!r}")
    return list(sources)


def check_qualities(qualities, n: int):
    """One float32 quality per embedding (NaN where none was given); finite and in [0, 1]."""
    import numpy as np

    if qualities is None:
        return np.full(n, np.nan, np.float32)
    try:
        arr = np.asarray(qualities, np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"qualities must be numbers, got {qualities!r}: {exc}") from None
    if len(arr) != n:
        raise GalleryError(f"qualities must be {n} numbers (one per embedding), got {len(arr)}")
    known = arr[~np.isnan(arr)]
    if len(known) and (not np.isfinite(known).all() or known.min() < 0 or known.max() > 1):
        raise GalleryError(f"qualities must lie in [0, 1] (NaN: unknown), got {arr.tolist()}")
    return arr.astype(np.float32)


def check_mode(mode: str) -> str:
    if mode not in SEARCH_MODES:
        raise GalleryError(f"unknown search mode {mode!r}; expected 'mean' or 'sample'")
    return mode


def check_open_set(rule, what: str) -> dict:
    """A JSON-safe copy of a stored open-set rule, or GalleryError naming what is wrong."""
    from face_perception.open_set import OpenSetRule

    try:
        OpenSetRule.from_dict(rule, what)
        return json.loads(json.dumps(rule, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"{what} is not a valid open-set rule: {exc}") from None
