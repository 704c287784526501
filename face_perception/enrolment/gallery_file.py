"""Enrolment changes written to a gallery file (``face-perception enroll``, the recognizer node's
services): save it and report look-alikes, add samples with their qualities, forget a person, name
a learnt stranger (the file is opened for the model by recognizer.open_gallery_file)."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from face_perception.gallery import Gallery
from face_perception.gallery.validation import GalleryError
from face_perception.recognition.recognizer import open_gallery_file

ANON_PREFIX = "anon_"


@dataclass
class SavedGallery:
    """A gallery file as an enrolment left it."""

    index: Path  # the JSON index written
    identities: int
    samples: int
    # (a, b, similarity) of enrolled identities at least as similar as the naming threshold in
    # force: faces of one may be named as the other.
    look_alikes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"gallery": str(self.index), "look_alikes": [list(t) for t in self.look_alikes],
                "gallery_identities": self.identities, "gallery_samples": self.samples}


def save_gallery_file(gallery: Gallery, path, meta) -> SavedGallery:
    """Save ``gallery`` to ``path`` and find the identities that now look alike under the
    open-set rule in force (the gallery's calibrated one, else the model's ``meta``)."""
    from face_perception.open_set import resolve_rule
    from face_perception.recognition.open_set_eval import look_alikes

    index = gallery.save(Path(path).expanduser())
    rule, _ = resolve_rule(meta, gallery)
    return SavedGallery(index, len(gallery), gallery.num_samples,
                        look_alikes(gallery, rule.threshold))


def next_anonymous_name(names: Sequence[str]) -> str:
    """anon_<n> with n one more than the largest anonymous number in ``names``."""
    numbers = [int(m.group(1)) for n in names
               if (m := re.fullmatch(re.escape(ANON_PREFIX) + r"(\d+)", n))]
    return f"{ANON_PREFIX}{max(numbers, default=-1) + 1}"


def enrol_into_file(path, meta, name: Optional[str], embeddings: np.ndarray,
                    sources: Sequence[str],
                    qualities: Optional[np.ndarray] = None) -> tuple[str, int]:
    """Add ``embeddings`` of the model ``meta`` (with a source label and quality each) to
    ``name`` (None: the next anon_<n>) in the gallery file at ``path`` (created when missing),
    saved as a segment; (name, its sample count)."""
    gallery = open_gallery_file(path, meta, create=True)
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
