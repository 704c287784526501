"""Rules for the name of a NEW enrolment (stricter than what a gallery file may hold): letters of
any script, but no reserved labels, no path or control characters, and a bounded length."""
from __future__ import annotations

import re
import unicodedata
from typing import Iterable

from face_perception.gallery.validation import GalleryError, check_name

MAX_NAME_LENGTH = 64
# Published by the nodes as class ids: a person with one of these names could not be told apart
# from an unknown face ("unknown", the recognizer's default unknown_label) or a bare detection
# ("face", the detector's class id).
RESERVED_NAMES = ("unknown", "face")
# Names the stranger learner gives (anon_<n>, enrolment/stream.py): a person enrolled
# under one would be mistaken for a learnt stranger and could be renumbered.
_ANON = re.compile(r"anon_\d+", re.IGNORECASE)
# Path separators: names end up in file names and topics of tools around the gallery.
_PATH_CHARACTERS = "/\\"
# Bidirectional overrides and isolates can make a name display as another one.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def check_new_name(name, reserved: Iterable[str] = ()) -> str:
    """The name to enrol under (Unicode NFC, so that "Zoë" typed two ways is one person), or
    GalleryError saying what is wrong. ``reserved``: more labels to refuse (e.g. the node's
    ``unknown_label``); compared case-insensitively like RESERVED_NAMES."""
    check_name(name)  # a string, not blank, no control character
    name = unicodedata.normalize("NFC", name)
    if name != name.strip():
        raise GalleryError(f"identity name must not start or end with white space: {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise GalleryError(f"identity name is {len(name)} characters long, at most "
                           f"{MAX_NAME_LENGTH} allowed: {name[:20]!r}...")
    if name in (".", ".."):
        raise GalleryError(f"identity name {name!r} is a path component, not a name")
    bad = sorted({ch for ch in name if ch in _PATH_CHARACTERS or ch in _BIDI_CONTROLS
                  or unicodedata.category(ch) in ("Cc", "Cs", "Co", "Cn")})
    if bad:
        raise GalleryError(f"identity name {name!r} contains characters not allowed in names: "
                           f"{', '.join(repr(c) for c in bad)} (path separators, control, "
                           "private-use or unassigned characters)")
    folded = name.casefold()
    for label in tuple(RESERVED_NAMES) + tuple(reserved):
        if label and folded == label.casefold():
            raise GalleryError(f"identity name {name!r} is reserved: the nodes publish "
                               f"{label!r} for faces that are not a known person")
    if _ANON.fullmatch(name):
        raise GalleryError(f"identity name {name!r} is reserved for strangers learnt by the "
                           "recognizer (anon_<n>)")
    return name
