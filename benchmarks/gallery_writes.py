"""Gallery writes proportional to the change: enrol one person (3 samples) or remove one into a
saved gallery of N identities (128-d, one sample each), then save; and load the result.

"full" is a whole-gallery write (``save(compact=True)``: what every save did before segments),
"segment" the default save to the gallery's own file (one segment file). Loads read the single
arrays file (full) or the base plus the segment. Times are the best of ``--repeat`` runs, with
the bytes each save wrote; the ratio column is full / segment.

    .venv/bin/python benchmarks/gallery_writes.py                 # 10k, 100k, 1M identities
    .venv/bin/python benchmarks/gallery_writes.py --sizes 10000   # one size
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from face_perception.gallery import Gallery

DIM = 128
SIZES = (10_000, 100_000, 1_000_000)


def _unit(rng, n: int) -> np.ndarray:
    out = np.empty((n, DIM), np.float32)
    for a in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - a), DIM), dtype=np.float32)
        out[a:a + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _written(folder: Path, before: dict) -> int:
    """Bytes of the files created or replaced since ``before`` (name -> mtime_ns)."""
    return sum(p.stat().st_size for p in folder.iterdir()
               if before.get(p.name) != p.stat().st_mtime_ns)


def _snapshot(folder: Path) -> dict:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


def measure(n: int, repeat: int, rng) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        g = Gallery("bench", DIM)
        g.add_many([f"id{i}" for i in range(n)], _unit(rng, n))
        index = g.save(folder / "people.json")
        g = Gallery.load(index)
        row = {"n": n}
        for mode, compact in (("full", True), ("segment", False)):
            times, nbytes = [], 0
            for r in range(repeat):
                g.save(index, compact=True)  # start from a single arrays file every time
                before = _snapshot(folder)
                t0 = time.perf_counter()
                g.add(f"new_{mode}_{r}", _unit(rng, 3))
                g.save(index, compact=compact)
                times.append(time.perf_counter() - t0)
                nbytes = _written(folder, before)
            row[f"enrol_{mode}"], row[f"bytes_{mode}"] = min(times), nbytes
            loads = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                Gallery.load(index)
                loads.append(time.perf_counter() - t0)
            row[f"load_{mode}"] = min(loads)
            times = []
            for r in range(repeat):
                g.save(index, compact=True)
                before = _snapshot(folder)
                t0 = time.perf_counter()
                g.remove(g.names[r])
                g.save(index, compact=compact)
                times.append(time.perf_counter() - t0)
            row[f"remove_{mode}"] = min(times)
        return row


def print_table(rows) -> None:
    print(f"{'identities':>10} | {'enrol+save full':>15} {'segment':>9} {'ratio':>6} | "
          f"{'written full':>12} {'segment':>9} | {'remove+save full':>16} {'segment':>9} "
          f"{'ratio':>6} | {'load full':>9} {'+segment':>9}")
    for r in rows:
        print(f"{r['n']:>10,} | {r['enrol_full']:>14.3f}s {r['enrol_segment']:>8.4f}s "
              f"{r['enrol_full'] / r['enrol_segment']:>5.0f}x | "
              f"{r['bytes_full'] / 2**20:>10.1f}MB {r['bytes_segment'] / 2**10:>7.1f}kB | "
              f"{r['remove_full']:>15.3f}s {r['remove_segment']:>8.4f}s "
              f"{r['remove_full'] / r['remove_segment']:>5.0f}x | "
              f"{r['load_full']:>8.2f}s {r['load_segment']:>8.2f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print_table([measure(n, args.repeat, rng) for n in args.sizes])


if __name__ == "__main__":
    main()
