"""The Gallery: identity -> sample embeddings and a per-identity mean, in memory.

A Gallery belongs to one embedding model (``model_id``, ``embedding_size``). It keeps every
enrolled sample embedding and a per-identity mean (the normalised mean of the samples); it
searches them with ``gallery.search`` (numpy or faiss) and saves itself through
``gallery.file_format`` (no pickle; docs/gallery.md).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, Union

import numpy as np

from face_perception.gallery import file_format
from face_perception.gallery.search import (
    APPROXIMATE_KINDS,
    FAISS_INDEX_KINDS,
    FaissIndex,
    ann_index,
    ann_paths,
    cached_faiss_index,
    choose_backend,
    resolve_index_kind,
    rows_digest,
    sample_groups,
    top_k_best_sample_faiss,
    top_k_best_sample_numpy,
    top_k_numpy,
)
from face_perception.gallery.validation import (
    GalleryError,
    check_mode,
    check_name,
    check_open_set,
    check_qualities,
    check_sources,
)
from face_perception.types import Category

_BLOCK = 65536  # identities per block when updating means

PathLike = Union[str, os.PathLike]


class Gallery:
    """Identities with all their sample embeddings and an L2-normalised mean per identity.

    model_id / embedding_size: the embedding model the gallery belongs to; embeddings of any
    other size are refused, and ``load`` refuses files of another model.
    backend: "auto" (numpy below ``faiss_threshold`` rows, faiss above when installed), "numpy"
    or "faiss". faiss_index: "auto" (default: exact "flat" below ``search.ANN_MIN_ROWS``
    identities, approximate "ivf" from there on), "flat" (always exact), "hnsw" or "ivf"
    (approximate). None of these change results for "flat": both backends are exact. A gallery
    loaded from (or saved to) a file keeps its approximate index of the identity means beside
    it (``<stem>.ann.faiss`` + ``.ann.json``), built once and rebuilt when the gallery changes
    (docs/gallery.md#search).
    """

    def __init__(self, model_id: str, embedding_size: int, *, backend: str = "auto",
                 faiss_threshold: Optional[int] = None, faiss_index: str = "auto"):
        if not isinstance(model_id, str) or not model_id.strip():
            raise GalleryError(f"model_id must be a non-empty string, got {model_id!r}")
        if (isinstance(embedding_size, bool) or not isinstance(embedding_size, (int, np.integer))
                or embedding_size <= 0):
            raise GalleryError(f"embedding_size must be a positive integer, got {embedding_size!r}")
        choose_backend(backend, 0)  # validates the name early
        if faiss_index not in ("auto",) + FAISS_INDEX_KINDS:
            raise GalleryError(f"faiss_index must be one of auto, {', '.join(FAISS_INDEX_KINDS)}"
                               f", got {faiss_index!r}")
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
        self._qualities = np.zeros(0, np.float32)  # enrolment quality per sample, NaN: unknown
        self._num_samples = 0
        self._version = 0  # bumped on every change; search caches are keyed by it
        self._faiss_cache: dict = {}
        # The gallery file this content was read from or written to (its version then): the
        # approximate index is stored beside it while the content is unchanged.
        self._file: Optional[Tuple[Path, int]] = None
        self._group_cache: Optional[Tuple[int, np.ndarray, np.ndarray]] = None
        self._lock = threading.RLock()
        # Changes since the gallery last matched a file (_synced: its index path and header):
        # save() to that file writes only these, as segments (file_format.append_segments).
        self._journal: list = []
        self._synced: Optional[Tuple[Path, dict]] = None
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

    def qualities(self, name: str) -> np.ndarray:
        """The enrolment quality of each sample of ``name`` (face_quality.quality_score, 0..1;
        NaN where none was recorded), in enrolment order."""
        with self._lock:
            rows = np.flatnonzero(self._owner[:self._num_samples] == self._row(name))
            return self._qualities[rows].copy()

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
            self._open_set = None if rule is None else check_open_set(rule, "open_set")

    # ------------------------------------------------------------------ changes
    def add(self, name: str, embeddings, sources: Union[None, str, Sequence[str]] = None,
            qualities: Optional[Sequence[float]] = None) -> int:
        """Enrol sample embeddings (D,) or (n, D) for ``name``; appends if it already exists.

        sources: optional label per sample (e.g. the image path). qualities: optional quality
        per sample (0..1, stored with it). Returns the number of samples the identity now has.
        """
        check_name(name)
        emb = self._check_embeddings(embeddings, "embeddings")
        if len(emb) == 0:
            raise GalleryError(f"no embeddings given for {name!r}")
        srcs = check_sources(sources, len(emb))
        quals = check_qualities(qualities, len(emb))
        with self._lock:
            self._append([name] * len(emb), emb, srcs, qualities=quals)
            self._log(("add", [name] * len(emb), emb, srcs, quals))
            return int(self._counts[self._lookup[name]])

    def add_many(self, names: Sequence[str], embeddings,
                 sources: Optional[Sequence[str]] = None) -> None:
        """Enrol one sample per row: ``names[i]`` gets ``embeddings[i]`` (names may repeat).

        Vectorised: enrolling a million identities this way takes seconds, not minutes.
        """
        names = list(names)
        unique = dict.fromkeys(names)
        for name in unique:
            check_name(name)
        emb = self._check_embeddings(embeddings, "embeddings")
        if len(emb) != len(names):
            raise GalleryError(f"add_many got {len(names)} names but {len(emb)} embeddings")
        srcs = check_sources(sources, len(emb))
        quals = check_qualities(None, len(emb))
        with self._lock:
            self._append(names, emb, srcs, unique, quals)
            self._log(("add", names, emb, srcs, quals))

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
            self._qualities = self._qualities[:s][keep_s]
            self._num_samples = int(keep_s.sum())
            del self._names[row]
            self._lookup = {nm: i for i, nm in enumerate(self._names)}
            self._changed(means_rewritten=True, samples_rewritten=True)
            self._log(("remove", name))

    def rename(self, old: str, new: str) -> None:
        """Give identity ``old`` the name ``new`` (which must not exist yet)."""
        check_name(new)
        with self._lock:
            row = self._row(old)
            if new == old:
                return
            if new in self._lookup:
                raise GalleryError(f"cannot rename {old!r} to {new!r}: {new!r} already exists "
                                   "(remove it first, or add the samples of one to the other)")
            self._names[row] = new
            self._synced = None  # segments cannot rename: the next save writes everything
            del self._lookup[old]
            self._lookup[new] = row
            self._version += 1  # vectors unchanged: search indexes stay valid

    # ------------------------------------------------------------------ search
    def resolved_backend(self, mode: str = "mean") -> str:
        """The backend ("numpy" or "faiss") a search in ``mode`` would use right now."""
        rows = len(self) if check_mode(mode) == "mean" else self._num_samples
        return choose_backend(self.backend, rows, self.faiss_threshold)

    def search(self, queries, k: int = 1, mode: str = "mean") -> List[List[Tuple[str, float]]]:
        """Top-k identities for each query by cosine similarity, best first.

        queries: (D,) or (N, D) embeddings (normalised here). mode "mean" compares with each
        identity's mean; "sample" with each identity's best-matching sample. Returns, per query,
        up to k (name, similarity) pairs with distinct names.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise GalleryError(f"k must be a positive integer, got {k!r}")
        check_mode(mode)
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
        from face_perception.open_set import OpenSetRule

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
        return file_format.index_path(path)

    @classmethod
    def exists(cls, path: PathLike) -> bool:
        """True when a gallery index file exists for ``path`` (it may still be invalid)."""
        return cls.index_path(path).is_file()

    def save(self, path: PathLike, compact: bool = False) -> Path:
        """Write the gallery atomically, readable by its owner only; returns the JSON index path.

        Saved to the file it was loaded from (or last saved to), and unchanged there since, only
        the changes are written: added samples and removed names as segment files listed by the
        index. Otherwise, with ``compact``, or once segments outgrow
        ``file_format.COMPACT_FRACTION`` of the base, the whole gallery is written as one arrays
        file ``<stem>.<sha256[:12]>.npz`` and the old files are deleted (only then is a removed
        person's data physically gone). A reader sees either the old gallery or the new one,
        never a mix (``file_format``).
        """
        index = self.index_path(path)
        with self._lock:
            header = {
                "format": file_format.FORMAT_NAME,
                "version": file_format.FORMAT_VERSION,
                "model_id": self.model_id,
                "embedding_size": self.embedding_size,
                "num_identities": len(self),
                "num_samples": self._num_samples,
            }
            if self._open_set is not None:
                header["open_set"] = self._open_set
            # An approximate-search index beside the file holds copies of the vectors: drop it
            # when the gallery changed, so a removed person leaves no copy behind (it is rebuilt
            # on the next large search).
            if self._file is None or self._file[1] != self._version:
                for stale in ann_paths(index):
                    stale.unlink(missing_ok=True)
            synced = self._synced
            if not compact and synced is not None and synced[0] == index.absolute():
                written = file_format.append_segments(index, header, synced[1],
                                                      file_format.journal_segments(self._journal))
                if written is not None:
                    self._journal, self._synced = [], (index.absolute(), written)
                    self._file = (index, self._version)
                    return index
            file_format.write_gallery(index, header, self._arrays_for_save())
            self._journal, self._synced = [], (index.absolute(), file_format.read_header(index))
            self._file = (index, self._version)
            return index

    @classmethod
    def load(cls, path: PathLike, model_id: Optional[str] = None,
             embedding_size: Optional[int] = None, **options) -> Gallery:
        """Read a gallery written by ``save``; refuses another model or a damaged file.

        model_id / embedding_size: what the caller's model is; a gallery made with another
        model raises GalleryError naming both. options: Gallery search options (backend, ...).
        """
        header, (names, counts, samples, sources, qualities) = file_format.read_gallery(
            cls.index_path(path), model_id, embedding_size)
        gallery = cls(header["model_id"], header["embedding_size"], **options)
        owner = np.repeat(np.arange(len(names), dtype=np.int64), counts)
        gallery._set_contents(names, samples, owner, sources, qualities)
        gallery._file = (cls.index_path(path), gallery._version)
        if header.get("open_set") is not None:
            gallery._open_set = check_open_set(header["open_set"],
                                               f"{cls.index_path(path)}: field 'open_set'")
        gallery._synced = (cls.index_path(path).absolute(), header)
        return gallery

    # ------------------------------------------------------------------ internals
    def _log(self, change: tuple) -> None:
        """Remember a change for the next save, while the gallery matches a file."""
        if self._synced is not None:
            self._journal.append(change)

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
                unique: Optional[dict] = None, qualities: Optional[np.ndarray] = None) -> None:
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
        self._qualities = _grow(self._qualities, s1)
        self._qualities[s0:s1] = np.nan if qualities is None else qualities
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
                      sources: List[str], qualities: Optional[np.ndarray] = None) -> None:
        # Samples come grouped by identity in names order, so first appearance keeps that order.
        unit = samples / np.linalg.norm(samples, axis=1, keepdims=True)
        self._append([names[i] for i in owner], unit.astype(np.float32), sources,
                     qualities=qualities)

    def _top_k(self, q: np.ndarray, k: int, mode: str) -> Tuple[np.ndarray, np.ndarray]:
        n, s = len(self), self._num_samples
        backend = self.resolved_backend(mode)
        if mode == "mean":
            if backend == "faiss":
                return self._mean_index(n).search(q, k)
            return top_k_numpy(self._means[:n], q, k)
        k = min(k, n)
        if backend == "numpy":
            if self._group_cache is None or self._group_cache[0] != self._version:
                self._group_cache = (self._version,
                                     *sample_groups(self._owner[:s], n))
            _, order, starts = self._group_cache
            return top_k_best_sample_numpy(self._samples[:s], order, starts, q, k)
        index = self._faiss("sample", self._samples[:s])
        return top_k_best_sample_faiss(index, self._owner[:s], q, k)

    def _faiss(self, mode: str, rows: np.ndarray) -> FaissIndex:
        kind = resolve_index_kind(self.faiss_index, len(rows))
        return cached_faiss_index(self._faiss_cache, mode, rows, kind)

    def _mean_index(self, n: int) -> FaissIndex:
        """The index of the identity means: from the file beside the gallery when the content
        is the file's (built there once), else kept in memory."""
        kind = resolve_index_kind(self.faiss_index, n)
        if kind not in APPROXIMATE_KINDS or self._file is None or self._file[1] != self._version:
            return self._faiss("mean", self._means[:n])
        cached = self._faiss_cache.get("ann")
        if cached is None or cached[0] != self._version:
            rows = self._means[:n]
            cached = (self._version, ann_index(self._file[0], rows, kind, rows_digest(rows)))
            self._faiss_cache["ann"] = cached
        return cached[1]

    def _arrays_for_save(self) -> dict:
        n, s = len(self), self._num_samples
        order = np.argsort(self._owner[:s], kind="stable")  # samples grouped per identity
        names = np.array(self._names, dtype=str) if n else np.zeros(0, "<U1")
        sources = (np.array([self._sources[i] for i in order], dtype=str) if s
                   else np.zeros(0, "<U1"))
        return file_format.with_qualities({
            "names": names,
            "counts": self._counts[:n].astype(np.int64),
            "samples": np.ascontiguousarray(self._samples[:s][order]),
            "sources": sources,
        }, self._qualities[:s], order)


def _grow(arr: np.ndarray, needed: int) -> np.ndarray:
    """Return ``arr`` with room for ``needed`` rows, doubling its capacity when short."""
    if len(arr) >= needed:
        return arr
    cap = max(needed, 2 * len(arr), 16)
    out = np.zeros((cap,) + arr.shape[1:], arr.dtype)
    out[:len(arr)] = arr
    return out


def load_or_create(path: PathLike, model_id: str, embedding_size: int, **options) -> Gallery:
    """Load the gallery at ``path`` if its index exists (refusing another model), else a new
    empty one for the model."""
    if Gallery.exists(path):
        return Gallery.load(path, model_id=model_id, embedding_size=embedding_size, **options)
    return Gallery(model_id, embedding_size, **options)
