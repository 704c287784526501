"""The gallery's pickle-free files: arrays in an ``.npz`` (read with ``allow_pickle=False``) and a
JSON index naming the model, the counts and the arrays file's sha256 (docs/gallery.md)."""
from __future__ import annotations

import json
import os
import uuid
import zipfile
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from face_perception.files import atomic_path, atomic_write_text, sha256_file
from face_perception.gallery.validation import GalleryError, check_name

FORMAT_NAME = "face_perception.gallery"
FORMAT_VERSION = 1
ARRAY_KEYS = {"names", "counts", "samples", "sources"}
# Embeddings and the names they belong to are personal data: only the owner may read the files.
FILE_MODE = 0o600
# Stored samples are unit vectors; anything further off than this was not written by save().
_NORM_TOLERANCE = 1e-3

PathLike = Union[str, os.PathLike]
# What a gallery file holds: names, per-identity sample counts, samples grouped per identity in
# names order, and one source label per sample.
Contents = Tuple[List[str], np.ndarray, np.ndarray, List[str]]


def index_path(path: PathLike) -> Path:
    """The JSON index file for ``path``: "people.json" and "people.npz" both mean people.json;
    any other name gets ".json" added."""
    p = Path(path)
    if p.suffix == ".json":
        return p
    if p.suffix == ".npz":
        return p.with_suffix(".json")
    return p.with_name(p.name + ".json")


def write_gallery(index: Path, header: dict, arrays: dict) -> Path:
    """Write ``arrays`` (the ARRAY_KEYS) and then the index holding ``header`` plus the arrays
    file's name, sha256 and size; both owner-only and atomic.

    The arrays go to ``<stem>.<sha256[:12]>.npz``, the index is renamed last and names the arrays
    file by content, so a reader sees either the old gallery or the new one, never a mix; the
    arrays file the old index named is removed afterwards.
    """
    folder = index.parent
    folder.mkdir(parents=True, exist_ok=True)
    old_arrays = _previous_arrays_file(index)
    # The final name depends on the content's hash, known only once the file is written: write
    # it atomically under a unique hidden name, then rename it within the folder.
    staged = folder / f".{index.stem}.{uuid.uuid4().hex}.npz.staged"
    try:
        with atomic_path(staged, FILE_MODE) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        digest = sha256_file(staged)
        arrays_name = f"{index.stem}.{digest[:12]}.npz"
        header = dict(header, arrays={"file": arrays_name, "sha256": digest,
                                      "bytes": staged.stat().st_size})
        os.replace(staged, folder / arrays_name)
    finally:
        staged.unlink(missing_ok=True)
    atomic_write_text(index, json.dumps(header, indent=2) + "\n", FILE_MODE)
    if old_arrays is not None and old_arrays.name != arrays_name:
        old_arrays.unlink(missing_ok=True)
    return index


def read_gallery(index: Path, model_id: Optional[str] = None,
                 embedding_size: Optional[int] = None) -> Tuple[dict, Contents]:
    """The header and contents of the gallery at ``index``, checked against its sha256 and, when
    given, the caller's model; GalleryError names the file and the fault."""
    if not index.is_file():
        raise FileNotFoundError(f"gallery index not found: {index}")
    for attempt in range(3):
        header = read_header(index)
        stored_id, stored_size = header["model_id"], header["embedding_size"]
        if ((model_id is not None and model_id != stored_id)
                or (embedding_size is not None and int(embedding_size) != stored_size)):
            want_id = model_id if model_id is not None else stored_id
            want_size = embedding_size if embedding_size is not None else stored_size
            raise GalleryError(
                f"gallery {index} was made with model {stored_id!r} (embedding size "
                f"{stored_size}), but this recognizer uses model {want_id!r} (embedding "
                f"size {want_size}); embeddings of different models cannot be compared: "
                "re-enroll the identities with this model")
        try:
            return header, _read_arrays(index, header)
        except GalleryError:
            # A concurrent save() may have committed a new index and deleted the arrays
            # file the one we read named: read the new index rather than fail.
            if attempt == 2 or _read_header_quietly(index) == header:
                raise
    raise AssertionError("unreachable")  # the loop returns or raises


def read_header(index: Path) -> dict:
    try:
        header = json.loads(index.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise GalleryError(f"{index} is not a gallery index (not UTF-8 text: {exc})") from None
    except json.JSONDecodeError as exc:
        raise GalleryError(f"{index} is not a valid gallery index (bad JSON: {exc}); the file "
                           "was truncated or edited") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise GalleryError(f"{index} is not a face_perception gallery index "
                           f"(expected \"format\": \"{FORMAT_NAME}\")")
    version = header.get("version")
    if version != FORMAT_VERSION:
        raise GalleryError(f"{index} has gallery format version {version!r}; this "
                           f"face_perception reads version {FORMAT_VERSION} only")
    spec = {"model_id": str, "embedding_size": int, "num_identities": int, "num_samples": int,
            "arrays": dict}
    for key, kind in spec.items():
        value = header.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise GalleryError(f"{index}: field {key!r} is missing or not a {kind.__name__} "
                               f"(got {value!r}); the index was edited or damaged")
    if header["embedding_size"] <= 0 or header["num_identities"] < 0 or header["num_samples"] < 0:
        raise GalleryError(f"{index}: negative or zero sizes in the index: {header}")
    arrays = header["arrays"]
    if (not isinstance(arrays.get("file"), str) or not _is_plain_file_name(arrays["file"])
            or not isinstance(arrays.get("sha256"), str)
            or not isinstance(arrays.get("bytes"), int)):
        raise GalleryError(f"{index}: field 'arrays' must name a file in the same folder with "
                           f"its sha256 and size, got {arrays!r}")
    return header


def _previous_arrays_file(index: Path) -> Optional[Path]:
    """The arrays file an existing index names (to delete once it is replaced), if sane."""
    try:
        name = json.loads(index.read_text(encoding="utf-8"))["arrays"]["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or not _is_plain_file_name(name):
        return None
    return index.parent / name


def _is_plain_file_name(name: str) -> bool:
    return name == Path(name).name and name not in ("", ".", "..") and "\\" not in name


def _read_header_quietly(index: Path) -> Optional[dict]:
    try:
        return read_header(index)
    except (GalleryError, OSError):
        return None


def _read_arrays(index: Path, header: dict) -> Contents:
    spec = header["arrays"]
    npz = index.parent / spec["file"]
    if not npz.is_file():
        raise GalleryError(f"gallery arrays file {npz} named by {index} is missing; copy both "
                           "files of a gallery together")
    size = npz.stat().st_size
    if size != spec["bytes"]:
        raise GalleryError(f"gallery arrays file {npz} has {size} bytes, the index says "
                           f"{spec['bytes']}: the file is truncated or was modified")
    digest = sha256_file(npz)
    if digest != spec["sha256"]:
        raise GalleryError(f"gallery arrays file {npz} does not match its index (sha256 {digest}, "
                           f"expected {spec['sha256']}): the file was modified or damaged")
    dim, n, s = header["embedding_size"], header["num_identities"], header["num_samples"]
    try:
        with np.load(npz, allow_pickle=False) as z:
            keys = set(z.files)
            if keys != ARRAY_KEYS:
                raise GalleryError(f"{npz} holds arrays {sorted(keys)}, expected "
                                   f"{sorted(ARRAY_KEYS)}")
            names, counts = z["names"], z["counts"]
            samples, sources = z["samples"], z["sources"]
    except GalleryError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # allow_pickle=False makes an object array raise here instead of unpickling it.
        raise GalleryError(f"cannot read gallery arrays {npz}: {exc}") from None
    _expect(npz, "names", names, "U", (n,))
    _expect(npz, "counts", counts, "i", (n,))
    _expect(npz, "samples", samples, "f", (s, dim))
    _expect(npz, "sources", sources, "U", (s,))
    if samples.dtype != np.float32:
        raise GalleryError(f"{npz}: samples must be float32, got {samples.dtype}")
    if n and (counts.min() < 1 or int(counts.sum()) != s):
        raise GalleryError(f"{npz}: per-identity sample counts do not add up to the {s} samples "
                           "(every identity needs at least one)")
    if s and not np.isfinite(samples).all():
        raise GalleryError(f"{npz}: samples contain NaN or Inf")
    if s:
        norms = np.linalg.norm(samples, axis=1)
        if np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
            raise GalleryError(f"{npz}: samples are not unit vectors (norms from "
                               f"{norms.min():.4g} to {norms.max():.4g}); the file was edited")
    name_list = names.tolist()
    if len(set(name_list)) != len(name_list):
        raise GalleryError(f"{npz}: identity names are not unique")
    for name in name_list:
        try:
            check_name(name)
        except GalleryError as exc:
            raise GalleryError(f"{npz}: {exc}") from None
    return name_list, counts.astype(np.int64), samples, sources.tolist()


def _expect(npz: Path, key: str, arr: np.ndarray, kind: str, shape: tuple) -> None:
    if arr.dtype.kind != kind or arr.shape != shape:
        raise GalleryError(f"{npz}: array {key!r} has dtype {arr.dtype} shape {arr.shape}, "
                           f"the index expects kind {kind!r} shape {shape}")
