"""Cosine top-k search for the Gallery: numpy matrix products and faiss indexes, over identity
means or over samples (best sample per identity).

Both backends take L2-normalised float32 rows, so inner product equals cosine similarity, and
return the same thing: (similarities, row indices) of shape (num_queries, k), best first.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np

# Above this many rows the Gallery's "auto" backend uses faiss when it is importable: faiss
# keeps no (queries x rows) score matrix and selects the top-k with a heap, which pays off for
# batched queries on large galleries (quiet 2-core machine, 128-d, top-5, 100 queries per call:
# 100k rows 2.8 ms/query numpy vs 0.9 ms faiss; 1M rows 22 ms vs 9 ms). Below ~10k rows the
# difference is not worth importing it. Small batches go to numpy either way (FAISS_MIN_QUERIES).
FAISS_AUTO_THRESHOLD = 10_000

# numpy search works on query chunks so that the (chunk x rows) float32 score matrix stays below
# this many elements (64 MiB), whatever the gallery size.
NUMPY_SCORE_BUDGET = 16 * 1024 * 1024

FAISS_INDEX_KINDS = ("flat", "hnsw", "ivf")
# The approximate kinds: "auto" picks IVF from ANN_MIN_ROWS rows on (below, the exact scan
# answers one query in a few ms: 100k rows about 3 ms on 2 cores; 1M rows 32 ms).
APPROXIMATE_KINDS = ("hnsw", "ivf")
ANN_MIN_ROWS = 300_000
# IVF: about 1 list per 1000 rows (k-means trained on at most IVF_TRAIN_ROWS rows, seconds on
# 2 cores), IVF_NPROBE of them scanned per query.
IVF_ROWS_PER_LIST = 1000
IVF_TRAIN_ROWS = 64_000
IVF_NPROBE = 24

# Below this many queries per call, faiss's exact scan leaves BLAS for a per-query loop (faiss's
# own distance_compute_blas_threshold is 20) and measured slower than numpy's single BLAS call on
# a quiet 2-core machine (1M x 128-d, one query: numpy 32 ms, faiss.knn 60 ms; 100 queries:
# numpy 22 ms/query, faiss 9 ms/query). The exact "flat" index therefore answers small batches,
# the typical few faces of one camera frame, with numpy; the results are identical.
FAISS_MIN_QUERIES = 20


@functools.cache
def faiss_available() -> bool:
    """True when the optional faiss package (faiss-cpu) can be imported."""
    return importlib.util.find_spec("faiss") is not None


def top_k_numpy(rows: np.ndarray, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner products of each query against all rows (both float32, normalised)."""
    n = rows.shape[0]
    k = min(k, n)
    nq = queries.shape[0]
    sims_out = np.empty((nq, k), dtype=np.float32)
    idx_out = np.empty((nq, k), dtype=np.int64)
    chunk = max(1, NUMPY_SCORE_BUDGET // max(n, 1))
    for start in range(0, nq, chunk):
        q = queries[start:start + chunk]
        # rows @ q.T runs as one BLAS call over the row-major gallery; q @ rows.T makes BLAS
        # walk the transposed gallery and measured about 2x slower at 1M rows.
        scores = (rows @ q.T).T
        sims, idx = top_k_of_scores(scores, k)
        sims_out[start:start + len(q)] = sims
        idx_out[start:start + len(q)] = idx
    return sims_out, idx_out


def top_k_of_scores(scores: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Best-first top-k of each row of a (queries x candidates) score matrix."""
    n = scores.shape[1]
    k = min(k, n)
    if k < n:
        # argpartition is O(n); only the k survivors get sorted. Partitioning at n-k keeps the
        # k largest at the end without a negated copy of the scores.
        part = np.argpartition(scores, n - k, axis=1)[:, n - k:]
    else:
        part = np.broadcast_to(np.arange(n), scores.shape).copy()
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    idx = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(part_scores, order, axis=1), idx


class FaissIndex:
    """A faiss inner-product index over a fixed set of normalised rows.

    kind "flat": exact brute-force scan (same results as numpy). kind "hnsw": approximate
    IndexHNSWFlat graph (much faster queries on very large galleries, slower to build, may
    miss the true best match with small probability; ``hnsw_m`` and ``ef_search`` trade speed
    for recall). kind "ivf": approximate IndexIVFFlat (k-means lists, a few scanned per query;
    builds in seconds where HNSW takes minutes at 1M rows).
    """

    def __init__(self, rows: np.ndarray, kind: str = "flat", hnsw_m: int = 32,
                 ef_search: int = 128):
        import faiss  # optional dependency: imported only when a faiss index is built

        if kind not in FAISS_INDEX_KINDS:
            raise ValueError(f"unknown faiss index kind {kind!r}; expected one of "
                             f"{', '.join(FAISS_INDEX_KINDS)}")
        self.kind = kind
        self.ntotal = int(rows.shape[0])
        self._faiss = faiss
        rows = np.ascontiguousarray(rows, dtype=np.float32)
        if kind == "flat":
            # Brute force straight on the caller's rows (faiss.knn): the same exact scan as an
            # IndexFlatIP without copying a possibly 512 MB matrix into an index first.
            self._rows = rows
            self._index = None
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(rows.shape[1], hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efSearch = ef_search
            index.add(rows)
            self._index = index
        else:
            self._index = _ivf_index(faiss, rows)

    @classmethod
    def from_faiss(cls, index, kind: str) -> FaissIndex:
        """Wrap an index read from a file (see ann_index)."""
        import faiss

        obj = cls.__new__(cls)
        obj.kind, obj.ntotal, obj._faiss, obj._index = kind, int(index.ntotal), faiss, index
        if kind == "ivf":
            index.nprobe = IVF_NPROBE
        return obj

    def extend(self, new_rows: np.ndarray) -> None:
        """Append rows to a graph index (HNSW graphs grow in place; no rebuild)."""
        if self._index is None:
            raise RuntimeError("a flat FaissIndex is a view: make a new one over the new rows")
        self._index.add(np.ascontiguousarray(new_rows, dtype=np.float32))
        self.ntotal = int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        k = min(k, self.ntotal)
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if self._index is None and len(q) < FAISS_MIN_QUERIES:
            return top_k_numpy(self._rows, q, k)
        if self._index is None:
            sims, idx = self._faiss.knn(q, self._rows, k, metric=self._faiss.METRIC_INNER_PRODUCT)
        else:
            sims, idx = self._index.search(q, k)
        return sims, idx.astype(np.int64, copy=False)


def choose_backend(backend: str, num_rows: int, threshold: Optional[int] = None) -> str:
    """Resolve "auto" to "numpy" or "faiss" for a gallery of ``num_rows`` rows."""
    if backend not in ("auto", "numpy", "faiss"):
        raise ValueError(f"unknown search backend {backend!r}; expected auto, numpy or faiss")
    if backend == "faiss" and not faiss_available():
        raise RuntimeError("search backend 'faiss' requested but faiss is not installed "
                           "(pip install faiss-cpu)")
    if backend != "auto":
        return backend
    limit = FAISS_AUTO_THRESHOLD if threshold is None else threshold
    return "faiss" if num_rows >= limit and faiss_available() else "numpy"


def sample_groups(owner: np.ndarray, num_identities: int) -> Tuple[np.ndarray, np.ndarray]:
    """Sample order that groups samples by identity, and where each identity's group starts."""
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(num_identities))
    return order, starts


def top_k_best_sample_numpy(samples: np.ndarray, order: np.ndarray, starts: np.ndarray,
                            queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k identities by their best-matching sample; ``order``/``starts`` from sample_groups."""
    s = len(samples)
    sims_out = np.empty((len(queries), k), np.float32)
    idx_out = np.empty((len(queries), k), np.int64)
    chunk = max(1, NUMPY_SCORE_BUDGET // max(s, 1))
    for a in range(0, len(queries), chunk):
        scores = (samples @ queries[a:a + chunk].T).T[:, order]
        # Best sample per identity: groups are consecutive after sorting by owner.
        best = np.maximum.reduceat(scores, starts, axis=1)
        sims_out[a:a + chunk], idx_out[a:a + chunk] = top_k_of_scores(best, k)
    return sims_out, idx_out


def top_k_best_sample_faiss(index: FaissIndex, owner: np.ndarray, queries: np.ndarray,
                            k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k distinct identities by best sample from a faiss index over the samples: search a
    few times k samples deep and widen until k identities are found (or all samples seen)."""
    s = len(owner)
    sims_out = np.full((len(queries), k), -np.inf, np.float32)
    idx_out = np.full((len(queries), k), -1, np.int64)
    for qi in range(len(queries)):
        depth = min(s, 4 * k + 16)
        while True:
            sims, idx = index.search(queries[qi:qi + 1], depth)
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


def cached_faiss_index(cache: Dict[str, FaissIndex], key: str, rows: np.ndarray,
                       kind: str) -> FaissIndex:
    """A faiss index over ``rows``, kept in ``cache[key]`` for graph kinds.

    A flat index is a view with no build step, so it is never cached. A cached graph of fewer
    rows is extended with the new ones (rows are only ever appended while it stays cached);
    the owner drops the entry when rows are rewritten or removed.
    """
    if kind == "flat":
        return FaissIndex(rows)
    cached = cache.get(key)
    if cached is None or cached.kind != kind or cached.ntotal > len(rows):
        cached = FaissIndex(rows, kind=kind)
        cache[key] = cached
    elif cached.ntotal < len(rows):
        cached.extend(rows[cached.ntotal:])
    return cached


def _ivf_index(faiss, rows: np.ndarray):
    """An IVF-Flat inner-product index over ``rows`` (lists from k-means on a row sample)."""
    n, dim = rows.shape
    nlist = int(max(1, min(n // 39, max(16, n // IVF_ROWS_PER_LIST))))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    # A fixed-seed sample: the same gallery gives the same lists.
    rng = np.random.default_rng(0)
    sample = rows if n <= IVF_TRAIN_ROWS else rows[np.sort(rng.choice(n, IVF_TRAIN_ROWS,
                                                                      replace=False))]
    index.train(np.ascontiguousarray(sample))
    index.add(rows)
    index.nprobe = IVF_NPROBE
    return index


def resolve_index_kind(kind: str, num_rows: int) -> str:
    """The faiss index kind a gallery option names ("auto": exact below ANN_MIN_ROWS)."""
    if kind == "auto":
        return "ivf" if num_rows >= ANN_MIN_ROWS else "flat"
    return kind


def rows_digest(rows: np.ndarray) -> str:
    """sha256 of the rows' bytes: names the gallery content an index file was built from."""
    import hashlib

    digest = hashlib.sha256(f"{rows.shape}".encode())
    view = np.ascontiguousarray(rows, dtype=np.float32)
    for a in range(0, len(view), 65536):
        digest.update(view[a:a + 65536].tobytes())
    return digest.hexdigest()


def ann_index(gallery_index: Path, rows: np.ndarray, kind: str, digest: str) -> FaissIndex:
    """The approximate index of ``rows`` stored beside ``gallery_index``, built once.

    Files: ``<stem>.ann.faiss`` (faiss's own format) and ``<stem>.ann.json`` (kind, row count,
    sha256 of the rows it was built from). An index file built from other rows (the gallery
    changed), of another kind, or unreadable is refused (logged) and rebuilt; both files are
    written atomically, the faiss file first, so a reader never pairs a new record with an old
    index.
    """
    import json
    import logging

    import faiss

    from face_perception.files import atomic_path, atomic_write_text

    log = logging.getLogger(__name__)
    record_path, index_path = ann_paths(gallery_index)
    if record_path.is_file() and index_path.is_file():
        try:
            record = json.loads(record_path.read_text())
            if record.get("rows_sha256") != digest or record.get("kind") != kind or \
                    record.get("rows") != len(rows):
                log.info("%s was built from other gallery rows: rebuilding", index_path)
            else:
                index = faiss.read_index(str(index_path))
                if index.ntotal == len(rows):
                    return FaissIndex.from_faiss(index, kind)
                log.warning("%s holds %d rows, its record %d: rebuilding", index_path,
                            index.ntotal, len(rows))
        except (ValueError, RuntimeError, OSError) as exc:
            log.warning("unreadable search index %s (%s): rebuilding", index_path, exc)
    built = FaissIndex(rows, kind=kind)
    try:
        with atomic_path(index_path) as tmp:
            faiss.write_index(built._index, str(tmp))
        atomic_write_text(record_path, json.dumps({"kind": kind, "rows": len(rows),
                                                   "rows_sha256": digest}))
    except OSError as exc:  # a read-only gallery folder still searches, from memory
        log.warning("cannot store the search index beside %s: %s", gallery_index, exc)
    return built


def ann_paths(gallery_index: Path) -> Tuple[Path, Path]:
    """(record, index) files of the approximate index stored beside a gallery's JSON index."""
    gallery_index = Path(gallery_index)
    stem = gallery_index.with_suffix("")
    return Path(f"{stem}.ann.json"), Path(f"{stem}.ann.faiss")

