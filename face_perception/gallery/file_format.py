"""The gallery's pickle-free files: a JSON index naming the model, the counts, a base arrays
``.npz`` and numbered change segments (added samples, removed names), each with its sha256; the
index rename commits a change, read with ``allow_pickle=False`` (docs/gallery.md)."""
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
# Version 2 adds "segments" (written only while an index lists some); 1 is a single arrays file.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
ARRAY_KEYS = {"names", "counts", "samples", "sources"}
# Optional per-sample enrolment quality (float32, NaN where unknown): written only when some
# sample has one, so a gallery without qualities is byte-for-byte the older format.
OPTIONAL_KEYS = {"add": {"qualities"}, "remove": set()}
SEGMENT_KEYS = {"add": ARRAY_KEYS, "remove": {"names"}}
# Segments are merged into a new base (a full write) once they would exceed this fraction of the
# base arrays file's size, or there would be more than MAX_SEGMENTS of them: loading stays about
# as fast as a single file, and removed people's data does not linger.
COMPACT_FRACTION = 0.25
MAX_SEGMENTS = 64
# Embeddings and the names they belong to are personal data: only the owner may read the files.
FILE_MODE = 0o600
# Stored samples are unit vectors; anything further off than this was not written by save().
_NORM_TOLERANCE = 1e-3

PathLike = Union[str, os.PathLike]
# What a gallery file holds: names, per-identity sample counts, samples grouped per identity in
# names order, one source label and one quality (NaN: not measured) per sample.
Contents = Tuple[List[str], np.ndarray, np.ndarray, List[str], np.ndarray]
# One change written as its own file: ("add", ARRAY_KEYS arrays) or ("remove", {"names": ...}).
Segment = Tuple[str, dict]


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
    file's name, sha256 and size; both owner-only and atomic. This is a full write (also the
    compaction of a gallery with segments): the index lists no segments.

    The arrays go to ``<stem>.<sha256[:12]>.npz``, the index is renamed last and names the arrays
    file by content, so a reader sees either the old gallery or the new one, never a mix; the
    files the old index named (arrays and segments) are removed afterwards.
    """
    old_files = _files_named_by(index)
    spec = _write_npz(index, arrays, "npz")
    header = {k: v for k, v in header.items() if k != "segments"}
    header["version"] = 1  # a single arrays file: readable by every face_perception version
    header["arrays"] = spec
    atomic_write_text(index, json.dumps(header, indent=2) + "\n", FILE_MODE)
    _remove_unnamed(index, old_files, {spec["file"]})
    return index


def append_segments(index: Path, header: dict, expected: dict, segments: List[Segment],
                    compact_fraction: float = COMPACT_FRACTION) -> Optional[dict]:
    """Commit ``segments`` (("add", ARRAY_KEYS arrays) or ("remove", {"names"})) on top of the
    gallery whose index is still ``expected``; returns the index written, or None when the
    caller must write the whole gallery instead: the index changed since (another writer), or
    the segments would exceed ``compact_fraction`` of the base arrays file (compaction due).

    Each segment file is written atomically under its content's name first; the index rename is
    the commit point, so a crash before it leaves the previous gallery as it was (plus an
    unnamed segment file that nothing reads).
    """
    if _read_header_quietly(index) != expected or expected.get("version") not in READ_VERSIONS:
        return None
    listed = list(expected.get("segments", []))
    base_bytes = expected["arrays"]["bytes"]
    staged = [(kind, arrays) for kind, arrays in segments if _segment_rows(kind, arrays)]
    pending = sum(s["bytes"] for s in listed)
    if len(listed) + len(staged) > MAX_SEGMENTS:
        return None
    written = []
    for kind, arrays in staged:
        spec = _write_npz(index, arrays, f"{kind}.npz")
        spec.update(kind=kind, num_identities=int(len(arrays["names"])),
                    num_samples=int(len(arrays["samples"])) if kind == "add" else 0)
        pending += spec["bytes"]
        if pending > compact_fraction * max(base_bytes, 1):
            for done in written + [spec]:
                (index.parent / done["file"]).unlink(missing_ok=True)
            return None
        written.append(spec)
    base = dict(expected["arrays"])
    base.setdefault("num_identities", expected["num_identities"])  # from a version-1 index
    base.setdefault("num_samples", expected["num_samples"])
    if listed or written:
        new = dict(header, version=FORMAT_VERSION, arrays=base, segments=listed + written)
    else:  # e.g. only the open-set rule changed: stay a version-1 index
        new = dict(header, version=1, arrays={k: base[k] for k in ("file", "sha256", "bytes")})
    if not written and _same_content(new, expected):
        return expected
    atomic_write_text(index, json.dumps(new, indent=2) + "\n", FILE_MODE)
    return new


def read_gallery(index: Path, model_id: Optional[str] = None,
                 embedding_size: Optional[int] = None) -> Tuple[dict, Contents]:
    """The header and contents of the gallery at ``index`` (base arrays with its segments
    applied), checked against the sha256 of every file and, when given, the caller's model;
    GalleryError names the file and the fault."""
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
            return header, _read_all(index, header)
        except GalleryError:
            # A concurrent save() may have committed a new index and deleted the files the
            # one we read named: read the new index rather than fail.
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
    if version not in READ_VERSIONS or isinstance(version, bool):
        raise GalleryError(f"{index} has gallery format version {version!r}; this "
                           f"face_perception reads versions {list(READ_VERSIONS)}")
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
    if version == 1:
        return header
    segments = header.get("segments")
    if not isinstance(segments, list):
        raise GalleryError(f"{index}: field 'segments' must be a list, got {segments!r}")
    for spec in [arrays] + segments:
        for key in ("num_identities", "num_samples"):
            if not isinstance(spec.get(key), int) or spec[key] < 0:
                raise GalleryError(f"{index}: {spec!r} lacks a count {key!r}")
    for seg in segments:
        if (not isinstance(seg, dict) or seg.get("kind") not in SEGMENT_KEYS
                or not isinstance(seg.get("file"), str) or not _is_plain_file_name(seg["file"])
                or not isinstance(seg.get("sha256"), str)
                or not isinstance(seg.get("bytes"), int)):
            raise GalleryError(f"{index}: each segment must name a file in the same folder with "
                               f"its kind (add/remove), sha256 and size, got {seg!r}")
    return header


def _files_named_by(index: Path) -> set:
    """Names of the files (arrays, segments) an existing index names, to delete once it is
    replaced; empty when there is no sane index."""
    try:
        header = json.loads(index.read_text(encoding="utf-8"))
        names = [header["arrays"]["file"]] + [s["file"] for s in header.get("segments", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()
    return {n for n in names if isinstance(n, str) and _is_plain_file_name(n)}


def _remove_unnamed(index: Path, old: set, keep: set) -> None:
    for name in old - keep:
        (index.parent / name).unlink(missing_ok=True)


def _write_npz(index: Path, arrays: dict, suffix: str) -> dict:
    """Write ``arrays`` owner-only and atomically as ``<stem>.<sha256[:12]>.<suffix>``; returns
    {"file", "sha256", "bytes"}."""
    folder = index.parent
    folder.mkdir(parents=True, exist_ok=True)
    # The final name depends on the content's hash, known only once the file is written: write
    # it atomically under a unique hidden name, then rename it within the folder.
    staged = folder / f".{index.stem}.{uuid.uuid4().hex}.npz.staged"
    try:
        with atomic_path(staged, FILE_MODE) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
        digest = sha256_file(staged)
        name = f"{index.stem}.{digest[:12]}.{suffix}"
        spec = {"file": name, "sha256": digest, "bytes": staged.stat().st_size}
        os.replace(staged, folder / name)
    finally:
        staged.unlink(missing_ok=True)
    return spec


def _segment_rows(kind: str, arrays: dict) -> int:
    return len(arrays["names"])


def _same_content(a: dict, b: dict) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _is_plain_file_name(name: str) -> bool:
    return name == Path(name).name and name not in ("", ".", "..") and "\\" not in name


def _read_header_quietly(index: Path) -> Optional[dict]:
    try:
        return read_header(index)
    except (GalleryError, OSError):
        return None


def _read_all(index: Path, header: dict) -> Contents:
    """The base arrays with every listed segment applied in order; the result must have the
    counts the index states."""
    contents = _read_arrays(index, header)
    segments = header.get("segments", [])
    if not segments:
        return contents
    dim = header["embedding_size"]
    merged = _Merge(*contents)
    for spec in segments:
        kind = spec["kind"]
        z, npz = _load_npz(index, spec, SEGMENT_KEYS[kind], OPTIONAL_KEYS[kind])
        if kind == "add":
            merged.add(*_check_samples(npz, z, dim, spec["num_identities"], spec["num_samples"]))
        else:
            names = z["names"]
            _expect(npz, "names", names, "U", (spec["num_identities"],))
            merged.remove(npz, names.tolist())
    names, counts, samples, sources, qualities = merged.result()
    if len(names) != header["num_identities"] or len(samples) != header["num_samples"]:
        raise GalleryError(f"{index}: after its segments the gallery has {len(names)} identities "
                           f"and {len(samples)} samples, the index says "
                           f"{header['num_identities']} and {header['num_samples']}")
    return names, counts, samples, sources, qualities


def _read_arrays(index: Path, header: dict) -> Contents:
    """The base arrays file, checked against its sha256 and the counts the index gives it."""
    spec = header["arrays"]
    counted = spec if "num_identities" in spec else header  # version 1: the header's counts
    z, npz = _load_npz(index, spec, ARRAY_KEYS, OPTIONAL_KEYS["add"])
    return _check_samples(npz, z, header["embedding_size"], counted["num_identities"],
                          counted["num_samples"])


def _load_npz(index: Path, spec: dict, keys: set,
              optional: frozenset = frozenset()) -> Tuple[dict, Path]:
    """Arrays of the file ``spec`` names (size and sha256 checked, no pickle), as a dict."""
    npz = index.parent / spec["file"]
    if not npz.is_file():
        raise GalleryError(f"gallery file {npz} named by {index} is missing; copy all files of "
                           "a gallery together (the index and the files it names)")
    size = npz.stat().st_size
    if size != spec["bytes"]:
        raise GalleryError(f"gallery file {npz} has {size} bytes, the index says "
                           f"{spec['bytes']}: the file is truncated or was modified")
    digest = sha256_file(npz)
    if digest != spec["sha256"]:
        raise GalleryError(f"gallery file {npz} does not match its index (sha256 {digest}, "
                           f"expected {spec['sha256']}): the file was modified or damaged")
    try:
        with np.load(npz, allow_pickle=False) as z:
            found = set(z.files)
            if not keys <= found <= keys | optional:
                raise GalleryError(f"{npz} holds arrays {sorted(found)}, expected "
                                   f"{sorted(keys)}" + (f" (optionally {sorted(optional)})"
                                                        if optional else ""))
            return {k: z[k] for k in found}, npz
    except GalleryError:
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        # allow_pickle=False makes an object array raise here instead of unpickling it.
        raise GalleryError(f"cannot read gallery arrays {npz}: {exc}") from None


def _check_samples(npz: Path, z: dict, dim: int, n: int, s: int) -> Contents:
    names, counts = z["names"], z["counts"]
    samples, sources = z["samples"], z["sources"]
    _expect(npz, "names", names, "U", (n,))
    _expect(npz, "counts", counts, "i", (n,))
    _expect(npz, "samples", samples, "f", (s, dim))
    _expect(npz, "sources", sources, "U", (s,))
    qualities = z.get("qualities")
    if qualities is None:
        qualities = np.full(s, np.nan, np.float32)
    _expect(npz, "qualities", qualities, "f", (s,))
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
    name_list = _checked_names(npz, names)
    return (name_list, counts.astype(np.int64), samples, sources.tolist(),
            qualities.astype(np.float32))


def _checked_names(npz: Path, names: np.ndarray) -> List[str]:
    name_list = names.tolist()
    if len(set(name_list)) != len(name_list):
        raise GalleryError(f"{npz}: identity names are not unique")
    for name in name_list:
        try:
            check_name(name)
        except GalleryError as exc:
            raise GalleryError(f"{npz}: {exc}") from None
    return name_list


class _Merge:
    """Base contents plus add/remove segments -> contents grouped per identity, in enrolment
    order (a name removed and added again goes to the end, as with Gallery.remove + add)."""

    def __init__(self, names, counts, samples, sources, qualities):
        self.names = list(names)
        self.lookup = {nm: i for i, nm in enumerate(self.names)}
        self.alive = [True] * len(self.names)
        self.samples = [samples]
        self.owner = [np.repeat(np.arange(len(names), dtype=np.int64), counts)]
        self.sources = list(sources)
        self.qualities = [qualities]
        self.regroup = False

    def add(self, names, counts, samples, sources, qualities) -> None:
        rows = []
        for name in names:
            row = self.lookup.get(name)
            if row is None:
                row = self.lookup[name] = len(self.names)
                self.names.append(name)
                self.alive.append(True)
            else:
                self.regroup = True  # more samples of an earlier identity: regroup at the end
            rows.append(row)
        self.samples.append(samples)
        self.owner.append(np.repeat(np.asarray(rows, np.int64), counts))
        self.sources.extend(sources)
        self.qualities.append(qualities)

    def remove(self, npz: Path, names: List[str]) -> None:
        for name in names:
            row = self.lookup.pop(name, None)
            if row is None:
                raise GalleryError(f"{npz}: removes {name!r}, which the gallery does not have")
            self.alive[row] = False

    def result(self) -> Contents:
        owner = np.concatenate(self.owner)
        samples = np.concatenate(self.samples)
        alive = np.asarray(self.alive, bool)
        keep = alive[owner]
        new_row = np.cumsum(alive) - 1  # old row -> row among the living
        owner = new_row[owner[keep]]
        samples = samples[keep]
        qualities = np.concatenate(self.qualities)[keep]
        sources = [src for src, k in zip(self.sources, keep.tolist()) if k]
        if self.regroup:
            order = np.argsort(owner, kind="stable")
            owner, samples, qualities = owner[order], samples[order], qualities[order]
            sources = [sources[i] for i in order.tolist()]
        names = [nm for nm, a in zip(self.names, self.alive) if a]
        counts = np.bincount(owner, minlength=len(names)).astype(np.int64)
        return (names, counts, np.ascontiguousarray(samples, np.float32), sources,
                qualities.astype(np.float32))


def segment_arrays(names: List[str], embeddings: np.ndarray, sources: List[str],
                   qualities: Optional[np.ndarray] = None) -> dict:
    """An "add" segment's arrays for samples ``embeddings`` of ``names`` (one name per row):
    grouped per identity in first-appearance order, like the base arrays; "qualities" only
    when some sample has one."""
    unique = list(dict.fromkeys(names))
    row = {nm: i for i, nm in enumerate(unique)}
    owner = np.fromiter((row[nm] for nm in names), np.int64, len(names))
    order = np.argsort(owner, kind="stable")
    arrays = {"names": np.array(unique, dtype=str),
              "counts": np.bincount(owner, minlength=len(unique)).astype(np.int64),
              "samples": np.ascontiguousarray(np.asarray(embeddings, np.float32)[order]),
              "sources": np.array([sources[i] for i in order.tolist()], dtype=str)}
    return with_qualities(arrays, qualities, order)


def with_qualities(arrays: dict, qualities: Optional[np.ndarray], order: np.ndarray) -> dict:
    """``arrays`` plus "qualities" (in ``order``) when some sample's quality is known."""
    if qualities is not None and len(qualities) and not np.isnan(qualities).all():
        arrays["qualities"] = np.ascontiguousarray(np.asarray(qualities, np.float32)[order])
    return arrays


def tombstone_arrays(names: List[str]) -> dict:
    """A "remove" segment's arrays: the names removed."""
    return {"names": np.array(list(names), dtype=str)}


def journal_segments(changes: list) -> List[Segment]:
    """Segments for a Gallery's changes in order: ("add", names, embeddings, sources,
    qualities) and ("remove", name); runs of one kind share a segment."""
    out: List[Segment] = []
    run: list = []

    def flush():
        if not run:
            return
        if run[0][0] == "remove":
            out.append(("remove", tombstone_arrays([c[1] for c in run])))
        else:
            names = [nm for c in run for nm in c[1]]
            sources = [src for c in run for src in c[3]]
            emb = np.concatenate([c[2] for c in run]) if len(run) > 1 else run[0][2]
            qualities = np.concatenate([c[4] for c in run])
            out.append(("add", segment_arrays(names, emb, sources, qualities)))
        run.clear()

    for change in changes:
        if run and run[0][0] != change[0]:
            flush()
        run.append(change)
    flush()
    return out


def _expect(npz: Path, key: str, arr: np.ndarray, kind: str, shape: tuple) -> None:
    if arr.dtype.kind != kind or arr.shape != shape:
        raise GalleryError(f"{npz}: array {key!r} has dtype {arr.dtype} shape {arr.shape}, "
                           f"the index expects kind {kind!r} shape {shape}")
