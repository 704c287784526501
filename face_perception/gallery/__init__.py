"""Reference gallery for recognition: identity -> sample embeddings, cosine search, safe files.

A Gallery belongs to one embedding model (``model_id``, ``embedding_size``). It keeps every
enrolled sample embedding and a per-identity mean (the normalised mean of the samples), searches
them by cosine similarity with numpy or faiss behind one API, and saves itself without pickle:
arrays in an ``.npz`` read with ``allow_pickle=False`` plus a JSON index that names the model
and holds the arrays' sha256 (and, once calibrated, the gallery's open-set rule). The format is
described in docs/gallery.md.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import unicodedata
import zipfile
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from face_perception.files import sha256_file
from face_perception.gallery.search import (
    NUMPY_SCORE_BUDGET,
    FaissIndex,
    choose_backend,
    top_k_numpy,
    top_k_of_scores,
)
from face_perception.types import Category

FORMAT_NAME = "face_perception.gallery"
FORMAT_VERSION = 1
SEARCH_MODES = ("mean", "sample")
_ARRAY_KEYS = {"names", "counts", "samples", "sources"}
# Stored samples are unit vectors; anything further off than this was not written by save().
_NORM_TOLERANCE = 1e-3
_BLOCK = 65536  # identities per block when updating means

PathLike = Union[str, os.PathLike]


class GalleryError(ValueError):
    """A gallery operation got bad input, or a gallery file is from another model or damaged."""


class Gallery:
    """Identities with all their sample embeddings and an L2-normalised mean per identity.

    model_id / embedding_size: the embedding model the gallery belongs to; embeddings of any
    other size are refused, and ``load`` refuses files of another model.
    backend: "auto" (numpy below ``faiss_threshold`` rows, faiss above when installed), "numpy"
    or "faiss". faiss_index: "flat" (exact, default) or "hnsw" (approximate, for very large
    galleries). None of these change results for "flat": both backends are exact.
    """

    def __init__(self, model_id: str, embedding_size: int, *, backend: str = "auto",
                 faiss_threshold: Optional[int] = None, faiss_index: str = "flat"):
        if not isinstance(model_id, str) or not model_id.strip():
            raise GalleryError(f"model_id must be a non-empty string, got {model_id!r}")
        if (isinstance(embedding_size, bool) or not isinstance(embedding_size, (int, np.integer))
                or embedding_size <= 0):
            raise GalleryError(f"embedding_size must be a positive integer, got {embedding_size!r}")
        choose_backend(backend, 0)  # validates the name early
        if faiss_index not in ("flat", "hnsw"):
            raise GalleryError(f"faiss_index must be 'flat' or 'hnsw', got {faiss_index!r}")
        if faiss_threshold is not None and (isinstance(faiss_threshold, bool) or not isinstance(
                faiss_threshold, (int, np.integer)) or faiss_threshold < 0):
            raise GalleryError(f"faiss_threshold must be a row count >= 0 or None, got "
                               f"{faiss_threshold!r}")
        self.model_id = model_id
        self.embedding_size = int(embedding_size)
        self.backend = backend
        self.faiss_threshold = faiss_threshold
        self.faiss_index = faiss_index
        dim = self.embedding_size
        # Identity rows (capacity grows by doubling so that incremental adds stay amortised O(1)).
        self._names: List[str] = []
        self._lookup: dict = {}
        # Norm of each identity's sum of unit samples: sum = mean * norm, so the sums need no
        # (N, D) array of their own (a million 128-d identities would cost another 512 MB).
        self._sum_norms = np.zeros(0, np.float64)
        self._means = np.zeros((0, dim), np.float32)
        self._counts = np.zeros(0, np.int64)
        # Sample rows, in insertion order; _owner is the identity row of each sample.
        self._samples = np.zeros((0, dim), np.float32)
        self._owner = np.zeros(0, np.int64)
        self._sources: List[str] = []
        self._num_samples = 0
        self._version = 0  # bumped on every change; search caches are keyed by it
        self._faiss_cache: dict = {}
        self._group_cache: Optional[Tuple[int, np.ndarray, np.ndarray]] = None
        self._lock = threading.RLock()
        # The open-set rule calibrated for this gallery, with its evidence (see set_open_set).
        self._open_set: Optional[dict] = None

    # ------------------------------------------------------------------ inspection
    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        try:
            return name in self._lookup
        except TypeError:  # unhashable: certainly not a name
            return False

    def __repr__(self) -> str:
        return (f"Gallery(model_id={self.model_id!r}, embedding_size={self.embedding_size}, "
                f"identities={len(self)}, samples={self._num_samples})")

    @property
    def names(self) -> List[str]:
        """Identity names in enrolment order (a copy)."""
        return list(self._names)

    @property
    def num_samples(self) -> int:
        return self._num_samples

    def samples(self, name: str) -> np.ndarray:
        """All normalised sample embeddings of ``name`` as (n, D) float32, in enrolment order."""
        with self._lock:
            rows = np.flatnonzero(self._owner[:self._num_samples] == self._row(name))
            return self._samples[rows].copy()

    def sources(self, name: str) -> List[str]:
        """The source label given for each sample of ``name`` ("" where none was given)."""
        with self._lock:
            rows = np.flatnonzero(self._owner[:self._num_samples] == self._row(name))
            return [self._sources[i] for i in rows]

    def mean(self, name: str) -> np.ndarray:
        """The normalised mean embedding of ``name`` (D,) float32."""
        with self._lock:
            return self._means[self._row(name)].copy()

    def count(self, name: str) -> int:
        """Number of samples enrolled for ``name``."""
        with self._lock:
            return int(self._counts[self._row(name)])

    def means(self) -> np.ndarray:
        """All identity means (len(self), D) float32 in ``names`` order (a copy)."""
        with self._lock:
            return self._means[:len(self)].copy()

    @property
    def open_set(self) -> Optional[dict]:
        """The stored open-set rule {"threshold", "margin", "evidence", ...} or None (a copy)."""
        return None if self._open_set is None else json.loads(json.dumps(self._open_set))

    def set_open_set(self, rule: Optional[dict]) -> None:
        """Store (or with None, forget) the open-set rule calibrated for this gallery; saved in
        the JSON index. ``rule`` holds "threshold" and "margin" plus any JSON evidence."""
        with self._lock:
            self._open_set = None if rule is None else _check_open_set(rule, "open_set")

    # ------------------------------------------------------------------ changes
    def add(self, name: str, embeddings, sources: Union[None, str, Sequence[str]] = None) -> int:
        """Enrol sample embeddings (D,) or (n, D) for ``name``; appends if it already exists.

        sources: optional label per sample (e.g. the image path). Returns the number of samples
        the identity now has.
        """
        _check_name(name)
        emb = self._check_embeddings(embeddings, "embeddings")
        if len(emb) == 0:
            raise GalleryError(f"no embeddings given for {name!r}")
        srcs = _check_sources(sources, len(emb))
        with self._lock:
            self._append([name] * len(emb), emb, srcs)
            return int(self._counts[self._lookup[name]])

    def add_many(self, names: Sequence[str], embeddings,
                 sources: Optional[Sequence[str]] = None) -> None:
        """Enrol one sample per row: ``names[i]`` gets ``embeddings[i]`` (names may repeat).

        Vectorised: enrolling a million identities this way takes seconds, not minutes.
        """
        names = list(names)
        unique = dict.fromkeys(names)
        for name in unique:
            _check_name(name)
        emb = self._check_embeddings(embeddings, "embeddings")
        if len(emb) != len(names):
            raise GalleryError(f"add_many got {len(names)} names but {len(emb)} embeddings")
        srcs = _check_sources(sources, len(emb))
        with self._lock:
            self._append(names, emb, srcs, unique)

    def remove(self, name: str) -> None:
        """Forget ``name`` and all its samples."""
        with self._lock:
            row = self._row(name)
            n, s = len(self), self._num_samples
            keep_id = np.ones(n, bool)
            keep_id[row] = False
            self._sum_norms = self._sum_norms[:n][keep_id]
            self._means = self._means[:n][keep_id]
            self._counts = self._counts[:n][keep_id]
            owner = self._owner[:s]
            keep_s = owner != row
            self._samples = self._samples[:s][keep_s]
            new_owner = owner[keep_s]
            new_owner[new_owner > row] -= 1
            self._owner = new_owner
            self._sources = [src for src, k in zip(self._sources, keep_s) if k]
            self._num_samples = int(keep_s.sum())
            del self._names[row]
            self._lookup = {nm: i for i, nm in enumerate(self._names)}
            self._changed(means_rewritten=True, samples_rewritten=True)

    def rename(self, old: str, new: str) -> None:
        """Give identity ``old`` the name ``new`` (which must not exist yet)."""
        _check_name(new)
        with self._lock:
            row = self._row(old)
            if new == old:
                return
            if new in self._lookup:
                raise GalleryError(f"cannot rename {old!r} to {new!r}: {new!r} already exists "
                                   "(remove it first, or add the samples of one to the other)")
            self._names[row] = new
            del self._lookup[old]
            self._lookup[new] = row
            self._version += 1  # vectors unchanged: search indexes stay valid

    # ------------------------------------------------------------------ search
    def resolved_backend(self, mode: str = "mean") -> str:
        """The backend ("numpy" or "faiss") a search in ``mode`` would use right now."""
        rows = len(self) if _check_mode(mode) == "mean" else self._num_samples
        return choose_backend(self.backend, rows, self.faiss_threshold)

    def search(self, queries, k: int = 1, mode: str = "mean") -> List[List[Tuple[str, float]]]:
        """Top-k identities for each query by cosine similarity, best first.

        queries: (D,) or (N, D) embeddings (normalised here). mode "mean" compares with each
        identity's mean; "sample" with each identity's best-matching sample. Returns, per query,
        up to k (name, similarity) pairs with distinct names.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        _check_mode(mode)
        q = self._check_embeddings(queries, "queries")
        with self._lock:
            if len(self) == 0:
                raise GalleryError("gallery is empty: enroll identities with add() before "
                                   "search() or match()")
            if len(q) == 0:
                return []
            sims, idx = self._top_k(q, int(k), mode)
            names = self._names
            return [[(names[j], float(s)) for s, j in zip(srow, irow) if j >= 0]
                    for srow, irow in zip(sims, idx)]

    def match(self, queries, threshold, mode: str = "mean") -> List[Optional[Category]]:
        """Best identity per query as Category(name, confidence=cosine similarity), or None.

        threshold: an ``OpenSetRule`` (a name needs the threshold AND the margin over the
        second-best identity), or a number (threshold only, margin 0). ``Category.extra`` holds
        ``second``: the second-best identity's similarity (None with one identity).
        """
        from face_perception.recognition.open_set import OpenSetRule

        if not isinstance(threshold, OpenSetRule):
            try:
                threshold = OpenSetRule(float(threshold))
            except (TypeError, ValueError):
                raise GalleryError(f"threshold must be a number, got {threshold!r} (or pass "
                                   "an OpenSetRule)") from None
        out: List[Optional[Category]] = []
        for hits in self.search(queries, k=2, mode=mode):
            cat = threshold.decide(hits)
            if cat is not None:
                cat.extra = {"second": hits[1][1] if len(hits) > 1 else None}
            out.append(cat)
        return out

    # ------------------------------------------------------------------ files
    @staticmethod
    def index_path(path: PathLike) -> Path:
        """The JSON index file that ``save``/``load`` use for ``path``.

        "people.json" and "people.npz" both mean people.json; any other name gets ".json" added.
        """
        p = Path(path)
        if p.suffix == ".json":
            return p
        if p.suffix == ".npz":
            return p.with_suffix(".json")
        return p.with_name(p.name + ".json")

    @classmethod
    def exists(cls, path: PathLike) -> bool:
        """True when a gallery index file exists for ``path`` (it may still be invalid)."""
        return cls.index_path(path).is_file()

    def save(self, path: PathLike) -> Path:
        """Write the gallery atomically; returns the JSON index path.

        Two files: the arrays in ``<stem>.<sha256[:12]>.npz`` and the index ``<stem>.json``,
        each written to a temporary file in the same folder and renamed. The index is renamed
        last and names the arrays file by content, so a reader sees either the old gallery or
        the new one, never a mix; the arrays file the old index named is removed afterwards.
        """
        index = self.index_path(path)
        folder = index.parent
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            arrays = self._arrays_for_save()
            header = {
                "format": FORMAT_NAME,
                "version": FORMAT_VERSION,
                "model_id": self.model_id,
                "embedding_size": self.embedding_size,
                "num_identities": len(self),
                "num_samples": self._num_samples,
            }
            if self._open_set is not None:
                header["open_set"] = self._open_set
        old_arrays = _previous_arrays_file(index)
        tmp = _temp_file(folder, index.stem + ".", ".npz.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            digest = sha256_file(tmp)
            arrays_name = f"{index.stem}.{digest[:12]}.npz"
            header["arrays"] = {"file": arrays_name, "sha256": digest,
                                "bytes": tmp.stat().st_size}
            os.replace(tmp, folder / arrays_name)
        finally:
            tmp.unlink(missing_ok=True)
        text = json.dumps(header, indent=2) + "\n"
        tmp = _temp_file(folder, index.stem + ".", ".json.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, index)
        finally:
            tmp.unlink(missing_ok=True)
        if old_arrays is not None and old_arrays.name != arrays_name:
            old_arrays.unlink(missing_ok=True)
        return index

    @classmethod
    def load(cls, path: PathLike, model_id: Optional[str] = None,
             embedding_size: Optional[int] = None, **options) -> Gallery:
        """Read a gallery written by ``save``; refuses another model or a damaged file.

        model_id / embedding_size: what the caller's model is; a gallery made with another
        model raises GalleryError naming both. options: Gallery search options (backend, ...).
        """
        index = cls.index_path(path)
        if not index.is_file():
            raise FileNotFoundError(f"gallery index not found: {index}")
        for attempt in range(3):
            header = _read_header(index)
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
                names, counts, samples, sources = _read_arrays(index, header)
                break
            except GalleryError:
                # A concurrent save() may have committed a new index and deleted the arrays
                # file the one we read named: read the new index rather than fail.
                if attempt == 2 or _read_header_quietly(index) == header:
                    raise
        gallery = cls(stored_id, stored_size, **options)
        owner = np.repeat(np.arange(len(names), dtype=np.int64), counts)
        gallery._set_contents(names, samples, owner, sources)
        if header.get("open_set") is not None:
            gallery._open_set = _check_open_set(header["open_set"], f"{index}: field 'open_set'")
        return gallery

    # ------------------------------------------------------------------ internals
    def _row(self, name: str) -> int:
        try:
            return self._lookup[name]
        except (KeyError, TypeError):
            raise GalleryError(f"no identity named {name!r} in the gallery") from None

    def _changed(self, means_rewritten: bool, samples_rewritten: bool = False) -> None:
        """Invalidate search caches. Rows appended at the end keep a cached HNSW graph valid
        (it is extended on the next search); rewritten or removed rows force a rebuild."""
        self._version += 1
        self._group_cache = None
        if means_rewritten:
            self._faiss_cache.pop("mean", None)
        if samples_rewritten:
            self._faiss_cache.pop("sample", None)

    def _check_embeddings(self, x, what: str) -> np.ndarray:
        """(n, D) float32 unit rows from (D,) or (n, D) input, or GalleryError naming the fault."""
        try:
            arr = np.asarray(x, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise GalleryError(f"{what} must be numeric arrays: {exc}") from None
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise GalleryError(f"{what} must have shape (D,) or (N, D), got {arr.shape}")
        if arr.shape[1] != self.embedding_size:
            raise GalleryError(f"{what} have size {arr.shape[1]} but this gallery's model "
                               f"{self.model_id!r} makes embeddings of size {self.embedding_size}")
        if len(arr) == 0:
            return arr.reshape(0, self.embedding_size)
        bad = ~np.isfinite(arr).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise GalleryError(f"{what} row {i} contains NaN or Inf: {arr[i][:8]}...")
        norms = np.linalg.norm(arr, axis=1)
        if (norms < 1e-12).any():
            i = int(np.flatnonzero(norms < 1e-12)[0])
            raise GalleryError(f"{what} row {i} is a zero vector (norm {norms[i]:g}); "
                               "it has no direction to compare")
        return (arr / norms[:, None]).astype(np.float32, copy=False)

    def _append(self, names: List[str], emb: np.ndarray, srcs: List[str],
                unique: Optional[dict] = None) -> None:
        if not names:
            return
        lookup = self._lookup
        old_n = len(self._names)
        # dict.fromkeys / map / zip run at C speed: a million names take about a second.
        unique = dict.fromkeys(names) if unique is None else unique
        new_names = [nm for nm in unique if nm not in lookup]
        lookup.update(zip(new_names, range(old_n, old_n + len(new_names))))
        self._names.extend(new_names)
        n = len(self._names)
        self._sum_norms = _grow(self._sum_norms, n)
        self._means = _grow(self._means, n)
        self._counts = _grow(self._counts, n)
        if len(new_names) == len(names):
            # Bulk enrolment of new people, one sample each: each mean is its unit sample.
            rows = np.arange(old_n, n, dtype=np.int64)
            self._means[old_n:n] = emb
            self._sum_norms[old_n:n] = 1.0
            self._counts[old_n:n] = 1
        else:
            rows = np.fromiter(map(lookup.__getitem__, names), np.int64, len(names))
            self._sum_norms[old_n:n] = 0.0
            self._means[old_n:n] = 0.0
            self._counts[old_n:n] = 0
            self._accumulate(rows, emb)
        s0, s1 = self._num_samples, self._num_samples + len(emb)
        self._samples = _grow(self._samples, s1)
        self._owner = _grow(self._owner, s1)
        self._samples[s0:s1] = emb
        self._owner[s0:s1] = rows
        self._sources.extend(srcs)
        self._num_samples = s1
        # Samples are only ever appended here; means of existing identities may have moved.
        self._changed(means_rewritten=len(new_names) != len(names))

    def _accumulate(self, rows: np.ndarray, emb: np.ndarray) -> None:
        """Add sample rows ``emb`` to the sums of identities ``rows`` and renormalise means."""
        # Sum the new rows per identity (sorted reduceat: np.add.at is far slower at 1M rows),
        # in blocks of identities so that temporaries stay small for million-row adds.
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        ends = np.r_[starts[1:], len(rows)]
        touched = sorted_rows[starts]
        self._counts[touched] += ends - starts
        for a in range(0, len(touched), _BLOCK):
            t, st = touched[a:a + _BLOCK], starts[a:a + _BLOCK]
            part = emb[order[st[0]:ends[a + len(t) - 1]]]
            sums = np.add.reduceat(part, st - st[0], axis=0)
            sums += self._means[t] * self._sum_norms[t, None].astype(np.float32)
            # The normalised sum equals the normalised mean; a sum can only vanish if samples
            # of one person point in opposite directions, which real embeddings never do.
            norms = np.linalg.norm(sums, axis=1)
            self._sum_norms[t] = norms
            self._means[t] = sums / np.maximum(norms, 1e-12)[:, None]

    def _set_contents(self, names: List[str], samples: np.ndarray, owner: np.ndarray,
                      sources: List[str]) -> None:
        # Samples come grouped by identity in names order, so first appearance keeps that order.
        unit = samples / np.linalg.norm(samples, axis=1, keepdims=True)
        self._append([names[i] for i in owner], unit.astype(np.float32), sources)

    def _top_k(self, q: np.ndarray, k: int, mode: str) -> Tuple[np.ndarray, np.ndarray]:
        n = len(self)
        backend = self.resolved_backend(mode)
        if mode == "mean":
            if backend == "faiss":
                return self._faiss("mean", self._means[:n]).search(q, k)
            return top_k_numpy(self._means[:n], q, k)
        return self._top_k_samples(q, min(k, n), backend)

    def _top_k_samples(self, q: np.ndarray, k: int, backend: str):
        s = self._num_samples
        samples, owner = self._samples[:s], self._owner[:s]
        if backend == "numpy":
            order, starts = self._groups()
            sims_out = np.empty((len(q), k), np.float32)
            idx_out = np.empty((len(q), k), np.int64)
            chunk = max(1, NUMPY_SCORE_BUDGET // max(s, 1))
            for a in range(0, len(q), chunk):
                scores = (samples @ q[a:a + chunk].T).T[:, order]
                # Best sample per identity: groups are consecutive after sorting by owner.
                best = np.maximum.reduceat(scores, starts, axis=1)
                sims_out[a:a + chunk], idx_out[a:a + chunk] = top_k_of_scores(best, k)
            return sims_out, idx_out
        index = self._faiss("sample", samples)
        sims_out = np.full((len(q), k), -np.inf, np.float32)
        idx_out = np.full((len(q), k), -1, np.int64)
        for qi in range(len(q)):
            depth = min(s, 4 * k + 16)
            while True:
                sims, idx = index.search(q[qi:qi + 1], depth)
                seen: dict = {}
                for sim, j in zip(sims[0], idx[0]):
                    if j >= 0 and owner[j] not in seen:
                        seen[int(owner[j])] = float(sim)
                        if len(seen) == k:
                            break
                if len(seen) == k or depth >= s:
                    break
                depth = min(s, depth * 4)
            for col, (row, sim) in enumerate(seen.items()):
                idx_out[qi, col], sims_out[qi, col] = row, sim
        return sims_out, idx_out

    def _groups(self) -> Tuple[np.ndarray, np.ndarray]:
        if self._group_cache is None or self._group_cache[0] != self._version:
            owner = self._owner[:self._num_samples]
            order = np.argsort(owner, kind="stable")
            starts = np.searchsorted(owner[order], np.arange(len(self)))
            self._group_cache = (self._version, order, starts)
        return self._group_cache[1], self._group_cache[2]

    def _faiss(self, mode: str, rows: np.ndarray) -> FaissIndex:
        if self.faiss_index == "flat":
            return FaissIndex(rows)  # a view, no build step: nothing worth caching
        cached = self._faiss_cache.get(mode)
        if cached is None or cached.kind != self.faiss_index or cached.ntotal > len(rows):
            cached = FaissIndex(rows, kind=self.faiss_index)
            self._faiss_cache[mode] = cached
        elif cached.ntotal < len(rows):
            cached.extend(rows[cached.ntotal:])
        return cached

    def _arrays_for_save(self) -> dict:
        n, s = len(self), self._num_samples
        order = np.argsort(self._owner[:s], kind="stable")  # samples grouped per identity
        names = np.array(self._names, dtype=str) if n else np.zeros(0, "<U1")
        sources = (np.array([self._sources[i] for i in order], dtype=str) if s
                   else np.zeros(0, "<U1"))
        return {
            "names": names,
            "counts": self._counts[:n].astype(np.int64),
            "samples": np.ascontiguousarray(self._samples[:s][order]),
            "sources": sources,
        }


# ---------------------------------------------------------------------- helpers
def _grow(arr: np.ndarray, needed: int) -> np.ndarray:
    """Return ``arr`` with room for ``needed`` rows, doubling its capacity when short."""
    if len(arr) >= needed:
        return arr
    cap = max(needed, 2 * len(arr), 16)
    out = np.zeros((cap,) + arr.shape[1:], arr.dtype)
    out[:len(arr)] = arr
    return out


def _check_name(name) -> None:
    if not isinstance(name, str):
        raise GalleryError(f"identity names must be strings, got {type(name).__name__} {name!r}")
    if not name.strip():
        raise GalleryError(f"identity name must not be empty or blank, got {name!r}")
    if not name.isprintable() and any(unicodedata.category(ch) == "Cc" for ch in name):
        raise GalleryError(f"identity name contains a control character: {name!r}")


def _check_sources(sources, n: int) -> List[str]:
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


def _check_open_set(rule, what: str) -> dict:
    """A JSON-safe copy of a stored open-set rule, or GalleryError naming what is wrong."""
    from face_perception.recognition.open_set import OpenSetRule

    try:
        OpenSetRule.from_dict(rule, what)
        return json.loads(json.dumps(rule, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise GalleryError(f"{what} is not a valid open-set rule: {exc}") from None


def _check_mode(mode: str) -> str:
    if mode not in SEARCH_MODES:
        raise GalleryError(f"unknown search mode {mode!r}; expected 'mean' or 'sample'")
    return mode


def _temp_file(folder: Path, prefix: str, suffix: str) -> Path:
    fd, name = tempfile.mkstemp(prefix="." + prefix, suffix=suffix, dir=folder)
    os.close(fd)
    return Path(name)


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
        return _read_header(index)
    except (GalleryError, OSError):
        return None


def _read_header(index: Path) -> dict:
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


def _read_arrays(index: Path, header: dict):
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
            if keys != _ARRAY_KEYS:
                raise GalleryError(f"{npz} holds arrays {sorted(keys)}, expected "
                                   f"{sorted(_ARRAY_KEYS)}")
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
            _check_name(name)
        except GalleryError as exc:
            raise GalleryError(f"{npz}: {exc}") from None
    return name_list, counts.astype(np.int64), samples, sources.tolist()


def _expect(npz: Path, key: str, arr: np.ndarray, kind: str, shape: tuple) -> None:
    if arr.dtype.kind != kind or arr.shape != shape:
        raise GalleryError(f"{npz}: array {key!r} has dtype {arr.dtype} shape {arr.shape}, "
                           f"the index expects kind {kind!r} shape {shape}")


def load_or_create(path: PathLike, model_id: str, embedding_size: int, **options) -> Gallery:
    """Load the gallery at ``path`` if its index exists (refusing another model), else a new
    empty one for the model."""
    if Gallery.exists(path):
        return Gallery.load(path, model_id=model_id, embedding_size=embedding_size, **options)
    return Gallery(model_id, embedding_size, **options)


__all__ = ["Gallery", "GalleryError", "load_or_create", "FORMAT_VERSION"]
