"""Gallery search latency and recall: numpy, faiss exact and approximate, a Python dict loop.

For each gallery size (identities of 128-d random unit embeddings, one sample each) it times
building the gallery and top-5 cosine search, one query per call and 100 queries per call, and
prints a table with each backend's speed-up over the dictionary loop (what a gallery kept as a
``{name: embedding}`` dict, like a pickled reference database, does per query). Backends:
numpy and faiss (exact scans), faiss-ivf (the approximate index a saved gallery of 300k+
identities uses by default; its build includes writing it beside the gallery file) and
faiss-hnsw (up to HNSW_LIMIT); recall@1 is the share of queries whose best identity is the
exact search's.

    .venv/bin/python benchmarks/gallery_search.py            # 1k, 100k, 1M identities
    .venv/bin/python benchmarks/gallery_search.py --quick    # 1k, 20k, 100k

The dict loop at sizes above ``LOOP_LIMIT`` is timed on a dict of LOOP_LIMIT identities and
scaled linearly (the loop's cost is linear in the identity count); the table marks such rows.
``benchmarks/recognition.py`` includes this table through ``run()`` and ``print_table()``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from face_perception.gallery import Gallery
from face_perception.gallery.search import faiss_available

DIM = 128
K = 5
LOOP_LIMIT = 100_000
FULL_SIZES = (1_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 20_000, 100_000)
HNSW_LIMIT = 100_000  # building an HNSW graph of 1M rows takes minutes on two cores


def _unit(rng, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for a in range(0, n, 100_000):  # in chunks: no float64 temporaries of the whole matrix
        block = rng.standard_normal((min(100_000, n - a), dim), dtype=np.float32)
        out[a:a + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _time_queries(search, queries: np.ndarray, min_calls: int, budget_s: float) -> float:
    """Seconds per single-query call: at least ``min_calls`` calls or ``budget_s`` seconds."""
    search(queries[:1])  # warm-up (lazy index builds, caches)
    calls, start = 0, time.perf_counter()
    while calls < min_calls or (time.perf_counter() - start < budget_s and calls < len(queries)):
        search(queries[calls % len(queries)][None, :])
        calls += 1
    return (time.perf_counter() - start) / calls


def _dict_loop_search(gallery: Dict[str, np.ndarray], q: np.ndarray, k: int):
    """What a dict-of-embeddings gallery does: one Python step per identity."""
    best: List = []
    for name, emb in gallery.items():
        sim = float(np.dot(q, emb))
        if len(best) < k:
            best.append((sim, name))
            best.sort(reverse=True)
        elif sim > best[-1][0]:
            best[-1] = (sim, name)
            best.sort(reverse=True)
    return best


def run(sizes: Sequence[int] = FULL_SIZES, quick: bool = False, dim: int = DIM,
        num_queries: int = 100, seed: int = 0, log=print) -> List[dict]:
    """Time every backend at every size; returns one dict per (size, backend)."""
    if quick and tuple(sizes) == FULL_SIZES:
        sizes = QUICK_SIZES
    rng = np.random.default_rng(seed)
    rows: List[dict] = []
    for n in sizes:
        emb = _unit(rng, n, dim)
        queries = emb[rng.integers(0, n, num_queries)] + 0.3 * _unit(rng, num_queries, dim)
        names = [f"id{i}" for i in range(n)]
        log(f"-- {n:,} identities x {dim}-d")
        backends = ["numpy"] + (["faiss", "faiss-ivf"] if faiss_available() else [])
        if faiss_available() and n <= HNSW_LIMIT and not quick:
            backends.append("faiss-hnsw")
        gallery = None
        exact_top1 = None
        tmp = tempfile.TemporaryDirectory(prefix="gallery_bench_")
        for backend in backends:
            gallery = None  # free the previous backend's gallery before building the next
            start = time.perf_counter()
            if backend == "faiss-hnsw":
                gallery = Gallery("bench", dim, backend="faiss", faiss_index="hnsw")
                gallery.add_many(names, emb)
                gallery.search(queries[0])  # the graph is built on first search
            elif backend == "faiss-ivf":
                gallery = Gallery("bench", dim, backend="faiss", faiss_index="ivf")
                gallery.add_many(names, emb)
                gallery.save(Path(tmp.name) / "bench.json")
                start = time.perf_counter()  # the index, not the gallery file, is timed
                gallery.search(queries[0])  # built (and stored beside the file) on first search
            else:
                gallery = Gallery("bench", dim, backend=backend, faiss_index="flat")
                gallery.add_many(names, emb)
            build = time.perf_counter() - start
            one = _time_queries(lambda q, g=gallery: g.search(q, k=K), queries,
                                min_calls=3, budget_s=2.0 if quick else 5.0)
            start = time.perf_counter()
            top1 = [h[0][0] for h in gallery.search(queries, k=K)]
            batch = (time.perf_counter() - start) / len(queries)
            exact_top1 = exact_top1 or top1  # numpy comes first
            recall = float(np.mean([a == b for a, b in zip(top1, exact_top1)]))
            rows.append(dict(size=n, backend=backend, build_s=build, ms_per_query=one * 1e3,
                             ms_per_query_batched=batch * 1e3, recall=recall, note=""))
            log(f"   {backend:<11} build {build:7.2f} s   {one * 1e3:9.3f} ms/query   "
                f"{batch * 1e3:9.3f} ms/query in batches of {len(queries)}   "
                f"recall@1 {recall:.3f}")
        tmp.cleanup()
        del gallery
        loop_n = min(n, LOOP_LIMIT)
        start = time.perf_counter()
        as_dict = {names[i]: emb[i].copy() for i in range(loop_n)}
        build = (time.perf_counter() - start) * n / loop_n
        per_query = _time_queries(lambda q, d=as_dict: _dict_loop_search(d, q[0], K), queries,
                                  min_calls=2, budget_s=2.0 if quick else 4.0) * n / loop_n
        note = "" if loop_n == n else f"scaled from {loop_n:,} identities"
        rows.append(dict(size=n, backend="python dict loop", build_s=build,
                         ms_per_query=per_query * 1e3, ms_per_query_batched=None, recall=None,
                         note=note))
        log(f"   dict loop   build {build:7.2f} s   {per_query * 1e3:9.3f} ms/query {note}")
        del as_dict, emb
    return rows


def print_table(rows: List[dict], file=None) -> None:
    """Markdown table; "x loop" is the dict loop's time per query divided by this row's."""
    out = file or sys.stdout
    loop: Dict[int, float] = {r["size"]: r["ms_per_query"] for r in rows
                              if r["backend"] == "python dict loop"}
    print("| identities | backend | build (s) | ms/query (1 per call) | x loop "
          "| ms/query (batched) | recall@1 vs exact | note |", file=out)
    print("|---:|---|---:|---:|---:|---:|---:|---|", file=out)
    for r in rows:
        base: Optional[float] = loop.get(r["size"])
        ratio = f"{base / r['ms_per_query']:.0f}x" if base else "-"
        b = r["ms_per_query_batched"]
        batched = f"{b:.3f}" if b is not None else "-"
        recall = f"{r['recall']:.3f}" if r.get("recall") is not None else "-"
        print(f"| {r['size']:,} | {r['backend']} | {r['build_s']:.2f} | {r['ms_per_query']:.3f} "
              f"| {ratio} | {batched} | {recall} | {r['note']} |", file=out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes 1k, 20k, 100k")
    parser.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")],
                        help="comma-separated identity counts (overrides --quick's sizes)")
    parser.add_argument("--dim", type=int, default=DIM)
    args = parser.parse_args(argv)
    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    rows = run(sizes=sizes, quick=args.quick, dim=args.dim)
    print()
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
