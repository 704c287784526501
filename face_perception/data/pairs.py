"""Verification pairs: seeded random same/different pairs from an ImageFolder, and LFW
``pairs.txt``-style explicit lists.

Both produce pairs in an order where contiguous folds are balanced (LFW's 10 sets; alternating
same/different for random pairs), which the k-fold protocol in ``evaluation`` relies on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence, Set, Tuple, Union

import numpy as np

from face_perception.data.errors import DatasetError
from face_perception.data.imagefolder import ImageFolder
from face_perception.files import atomic_write_text

# Below this fraction of all possible pairs, rejection sampling is fast; above it the candidate
# pairs are listed and sampled directly (rejection would keep hitting pairs already drawn).
_ENUMERATE_ABOVE = 0.5


@dataclass(frozen=True)
class Pair:
    """Two images and whether they show the same person."""

    first: Path
    second: Path
    issame: bool


def labels_of(pairs: Sequence[Pair]) -> np.ndarray:
    return np.array([p.issame for p in pairs], dtype=bool)


# ---------------------------------------------------------------------------- random pairs
def random_pairs(folder: ImageFolder, num_pairs: int, seed: int = 0,
                 allow_fewer: bool = False) -> List[Pair]:
    """``num_pairs`` distinct pairs: half same-identity, half different (same gets the odd one).

    Each same pair is drawn uniformly from all same-identity image pairs, each different pair
    uniformly from all cross-identity pairs; the order alternates same/different (spread
    evenly when there are fewer of one kind). The same folder and seed always give the same
    pairs. When a kind has fewer pairs than asked, ``allow_fewer`` takes all of that kind
    (compare ``len(result)`` with ``num_pairs``) instead of raising DatasetError.
    """
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, (int, np.integer)) \
            or num_pairs < 2:
        raise DatasetError(f"num_pairs must be an integer of at least 2, got {num_pairs!r}")
    n_same = (int(num_pairs) + 1) // 2
    n_diff = int(num_pairs) - n_same
    labels = np.array([label for _, label in folder.samples], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(folder.identities)).astype(np.int64)
    max_same = int((counts * (counts - 1) // 2).sum())
    total = len(labels) * (len(labels) - 1) // 2
    max_diff = total - max_same
    if allow_fewer and max_same and max_diff:
        n_same, n_diff = min(n_same, max_same), min(n_diff, max_diff)
    if n_same > max_same:
        multi = int((counts >= 2).sum())
        raise DatasetError(f"{folder.root}: asked for {n_same} same-person pairs but only "
                           f"{max_same} exist ({multi} identities have 2 or more images)")
    if n_diff > max_diff:
        raise DatasetError(f"{folder.root}: asked for {n_diff} different-person pairs but only "
                           f"{max_diff} exist ({len(folder.identities)} identities)")
    rng = np.random.default_rng(seed)
    # Images of each identity are contiguous in folder.samples (sorted by identity).
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    same = _same_pairs(rng, counts, starts, n_same, max_same)
    diff = _diff_pairs(rng, labels, n_diff, max_diff)
    paths = [p for p, _ in folder.samples]
    # Each pair sits at the middle of its share of the list, so every contiguous fold gets
    # its share of both kinds (plain alternation when the counts are equal).
    tagged = [((i + 0.5) / n_same, 0, Pair(paths[a], paths[b], True))
              for i, (a, b) in enumerate(same)]
    tagged += [((i + 0.5) / n_diff, 1, Pair(paths[a], paths[b], False))
               for i, (a, b) in enumerate(diff)]
    return [pair for *_, pair in sorted(tagged, key=lambda t: t[:2])]


def _same_pairs(rng, counts, starts, n: int, available: int) -> List[Tuple[int, int]]:
    if n > _ENUMERATE_ABOVE * available:
        every = [(int(s + i), int(s + j)) for s, c in zip(starts, counts)
                 for i in range(c) for j in range(i + 1, c)]
        pick = rng.choice(len(every), size=n, replace=False)
        return [every[k] for k in pick]
    weight = (counts * (counts - 1) / 2.0)
    weight /= weight.sum()
    chosen: Set[Tuple[int, int]] = set()
    out: List[Tuple[int, int]] = []
    while len(out) < n:
        ident = int(rng.choice(len(counts), p=weight))
        i, j = rng.choice(int(counts[ident]), size=2, replace=False)
        pair = (int(starts[ident] + min(i, j)), int(starts[ident] + max(i, j)))
        if pair not in chosen:
            chosen.add(pair)
            out.append(pair)
    return out


def _diff_pairs(rng, labels, n: int, available: int) -> List[Tuple[int, int]]:
    if n > _ENUMERATE_ABOVE * available:
        every = [(i, j) for i in range(len(labels)) for j in range(i + 1, len(labels))
                 if labels[i] != labels[j]]
        pick = rng.choice(len(every), size=n, replace=False)
        return [every[k] for k in pick]
    chosen: Set[Tuple[int, int]] = set()
    out: List[Tuple[int, int]] = []
    while len(out) < n:
        i, j = (int(v) for v in rng.integers(0, len(labels), size=2))
        if labels[i] == labels[j]:
            continue
        pair = (min(i, j), max(i, j))
        if pair not in chosen:
            chosen.add(pair)
            out.append(pair)
    return out


# ---------------------------------------------------------------------------- LFW pairs.txt
def read_lfw_pairs(pairs_file: Union[str, os.PathLike], images_root: Union[str, os.PathLike],
                   ext: str = "jpg", check_exists: bool = True) -> List[Pair]:
    """Read an LFW-style pair list.

    Lines: ``name<TAB>n1<TAB>n2`` (same person) or ``name1<TAB>n1<TAB>name2<TAB>n2``
    (different), images at ``images_root/name/name_<n:04d>.<ext>``; any whitespace separates
    fields. An optional first line ``<sets> <pairs per set>`` (LFW: ``10 300``) is checked
    against the number of pair lines. Errors name ``file:line``.
    """
    pairs_file, root = Path(pairs_file), Path(images_root)
    if not pairs_file.is_file():
        raise FileNotFoundError(f"pair list not found: {pairs_file}")
    try:
        lines = pairs_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{pairs_file}: not a text file ({exc})") from None
    ext = ext.lstrip(".")
    expected = None
    out: List[Pair] = []
    for lineno, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{pairs_file}:{lineno}"
        if not out and expected is None and len(fields) == 2 and all(f.isdigit() for f in fields):
            sets, per_set = int(fields[0]), int(fields[1])
            expected = 2 * sets * per_set  # each set: per_set same + per_set different
            continue
        if len(fields) == 3:
            name, a, b = fields
            first, second, same = (name, _number(a, where)), (name, _number(b, where)), True
        elif len(fields) == 4:
            first = (fields[0], _number(fields[1], where))
            second = (fields[2], _number(fields[3], where))
            same = fields[0] == fields[2]
        else:
            raise DatasetError(f"{where}: expected 3 fields (name n1 n2) or 4 fields "
                               f"(name1 n1 name2 n2), got {len(fields)}: {line.strip()!r}")
        p1 = root / first[0] / f"{first[0]}_{first[1]:04d}.{ext}"
        p2 = root / second[0] / f"{second[0]}_{second[1]:04d}.{ext}"
        if check_exists:
            for p in (p1, p2):
                if not p.is_file():
                    raise DatasetError(f"{where}: image not found: {p}")
        out.append(Pair(p1, p2, same))
    if not out:
        raise DatasetError(f"{pairs_file}: no pairs in the file")
    if expected is not None and len(out) != expected:
        raise DatasetError(f"{pairs_file}: the header promises {expected} pairs, the file "
                           f"has {len(out)} (truncated or edited?)")
    return out


def default_images_root(pairs_file: Union[str, os.PathLike]) -> Path:
    """Where a pair list's images are when nobody says: its folder, or that folder's ``lfw/``
    when there is one (the toolkit's ``$LFW_ROOT/pairs.txt`` + ``$LFW_ROOT/lfw/``)."""
    folder = Path(pairs_file).parent
    return folder / "lfw" if (folder / "lfw").is_dir() else folder


def _number(text: str, where: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise DatasetError(f"{where}: image number must be a positive integer, got {text!r}")
    return int(text)


def write_lfw_pairs(path: Union[str, os.PathLike], pairs: Sequence[Tuple], sets: int = 0) -> Path:
    """Write ``(name, n1, n2)`` / ``(name1, n1, name2, n2)`` tuples as an LFW pair list, with
    the ``<sets> <pairs per set>`` header when ``sets`` is given."""
    path = Path(path)
    lines = []
    if sets:
        lines.append(f"{sets}\t{len(pairs) // (2 * sets)}")
    lines += ["\t".join(str(f) for f in p) for p in pairs]
    return atomic_write_text(path, "\n".join(lines) + "\n")
