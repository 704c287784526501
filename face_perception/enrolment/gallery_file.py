"""Enrolment changes written straight to a gallery file (the recognizer node's services): add
samples with their qualities, forget a person, name a learnt stranger."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from face_perception.gallery import Gallery, load_or_create
from face_perception.gallery.validation import GalleryError

ANON_PREFIX = "anon_"


def next_anonymous_name(names: Sequence[str]) -> str:
    """anon_<n> with n one more than the largest anonymous number in ``names``."""
    numbers = [int(m.group(1)) for n in names
               if (m := re.fullmatch(re.escape(ANON_PREFIX) + r"(\d+)", n))]
    return f"{ANON_PREFIX}{max(numbers, default=-1) + 1}"


def enrol_into_file(path, model_id: str, embedding_size: int, name: Optional[str],
                    embeddings: np.ndarray, sources: Sequence[str],
                    qualities: Optional[np.ndarray] = None) -> tuple[str, int]:
    """Add ``embeddings`` (with a source label and quality each) to ``name`` (None: the next
    anon_<n>) in the gallery file at ``path`` (created when missing), saved as a segment;
    (name, its sample count)."""
    gallery = load_or_create(Path(path).expanduser(), model_id, embedding_size)
    if name is None:
        name = next_anonymous_name(gallery.names)
    count = gallery.add(name, embeddings, sources=list(sources), qualities=qualities)
    gallery.save(Path(path).expanduser())
    return name, count


def forget_in_file(path, name: str, compact: bool) -> int:
    """Remove ``name`` from the gallery file at ``path``; the samples it had. ``compact``
    rewrites the arrays so that the person's embeddings are physically gone."""
    index = Gallery.index_path(Path(path).expanduser())
    if not index.is_file():
        raise GalleryError(f"gallery {path} not found")
    gallery = Gallery.load(index)
    count = gallery.count(name)  # GalleryError naming the name when absent
    gallery.remove(name)
    gallery.save(index, compact=compact)
    return count
