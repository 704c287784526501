"""WIDER FACE annotations: the RetinaFace training ``label.txt`` and the official val ground truth.

Two text formats are read:

* training format (RetinaFace / Pytorch_Retinaface ``label.txt``): a ``# <image path>`` line
  per image (optionally followed by width and height), then one line per face:
  ``x y w h`` optionally followed by 5 landmarks as ``lx ly flag`` triples and a trailing
  blur/score value (4, 19 or 20 numbers). Landmarks of -1 mean "not annotated".
* official val ground truth (``wider_face_val_bbx_gt.txt``): image path line, face count line,
  then ``x y w h blur expression illumination invalid occlusion pose`` per face (a count of 0 is
  followed by one all-zero line). Faces flagged ``invalid`` are ignored by the evaluation.

Per-difficulty split lists (easy/medium/hard) are read from the official toolkit's MATLAB files
(``wider_easy_val.mat``, ..., with our own reader in ``matfile.py``) or from plain text files
(``<image path> <1-based face index> ...`` per line). The official ``wider_face_val.mat`` ground
truth is read as well.
Boxes are returned as x1, y1, x2, y2 (x2 = x + w), landmarks as 10 numbers (5 x, y pairs).
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

DIFFICULTIES = ("easy", "medium", "hard")


class WiderFormatError(ValueError):
    """A WIDER annotation file that cannot be read; the message names file and line."""


@dataclass
class WiderSample:
    """One annotated image.

    boxes: (N, 4) float32 x1, y1, x2, y2 in image pixels; landmarks: (N, 10) float32 (5 points,
    -1 where absent); has_landmarks: (N,) bool; ignore: (N,) bool, faces that count neither as
    hits nor as misses in evaluation (WIDER's ``invalid`` flag); subsets: difficulty name ->
    (N,) bool mask of the faces that belong to that difficulty (empty when no split lists).
    """

    image_path: Path
    boxes: np.ndarray
    landmarks: np.ndarray
    has_landmarks: np.ndarray
    ignore: np.ndarray = None
    subsets: dict = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        self.image_path = Path(self.image_path)
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float32).reshape(n, 10)
        self.has_landmarks = np.asarray(self.has_landmarks, dtype=bool).reshape(n)
        if self.ignore is None:
            self.ignore = np.zeros(n, dtype=bool)
        self.ignore = np.asarray(self.ignore, dtype=bool).reshape(n)
        if not self.name:
            self.name = self.image_path.name

    def __len__(self) -> int:
        return len(self.boxes)


def _numbers(tokens: Sequence[str], path: Path, lineno: int) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        raise WiderFormatError(
            f"{path}:{lineno}: expected numbers, got {' '.join(tokens)!r}") from None
    if not all(np.isfinite(values)):
        raise WiderFormatError(f"{path}:{lineno}: non-finite value in {' '.join(tokens)!r}")
    return values


def _open_lines(path: Path) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WIDER annotation file not found: {path}")
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


def _image_name(rest: str) -> str:
    # InsightFace's variant appends "width height" to the path line; drop two trailing integers.
    parts = rest.split()
    if len(parts) >= 3 and parts[-1].isdigit() and parts[-2].isdigit():
        return " ".join(parts[:-2])
    return rest.strip()


def read_label_file(path: os.PathLike, images_dir: Optional[os.PathLike] = None,
                    keep_empty: bool = True) -> list[WiderSample]:
    """Read a RetinaFace training ``label.txt``; images are under ``images_dir``.

    ``images_dir`` defaults to ``<folder of label.txt>/images``. Faces with zero or negative width
    or height (a few exist in WIDER) are dropped, as RetinaFace training cannot match them.
    """
    path = Path(path)
    images_dir = Path(images_dir) if images_dir is not None else path.parent / "images"
    samples: list[WiderSample] = []
    current: Optional[str] = None
    rows: list[list[float]] = []

    def flush() -> None:
        if current is None:
            return
        if rows or keep_empty:
            samples.append(_training_sample(images_dir / current, rows, current))

    for lineno, raw in enumerate(_open_lines(path), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            flush()
            current = _image_name(line[1:])
            if not current:
                raise WiderFormatError(f"{path}:{lineno}: '#' line without an image path")
            rows = []
            continue
        if current is None:
            raise WiderFormatError(
                f"{path}:{lineno}: face line before the first '# <image path>' line")
        tokens = line.split()
        if len(tokens) not in (4, 19, 20):
            raise WiderFormatError(
                f"{path}:{lineno}: expected 4, 19 or 20 numbers (x y w h [5 x (lx ly flag)] "
                f"[score]), got {len(tokens)}")
        rows.append(_numbers(tokens, path, lineno))
    flush()
    if not samples:
        raise WiderFormatError(f"{path}: no '# <image path>' entries")
    return samples


def _training_sample(image_path: Path, rows: list[list[float]], name: str) -> WiderSample:
    boxes, lms, has = [], [], []
    for row in rows:
        x, y, w, h = row[:4]
        if w <= 0 or h <= 0:
            continue
        boxes.append([x, y, x + w, y + h])
        if len(row) >= 19:
            pts = np.array(row[4:19], dtype=np.float32).reshape(5, 3)[:, :2].reshape(10)
            present = bool(pts[0] >= 0)
        else:
            pts, present = np.full(10, -1.0, np.float32), False
        lms.append(pts if present else np.full(10, -1.0, np.float32))
        has.append(present)
    return WiderSample(image_path, np.array(boxes, np.float32).reshape(-1, 4),
                       np.array(lms, np.float32).reshape(-1, 10), np.array(has, bool), name=name)


def read_bbx_gt(path: os.PathLike, images_dir: os.PathLike) -> list[WiderSample]:
    """Read the official ``wider_face_<split>_bbx_gt.txt`` (images under ``images_dir``)."""
    path = Path(path)
    images_dir = Path(images_dir)
    lines = _open_lines(path)
    samples: list[WiderSample] = []
    i = 0
    while i < len(lines):
        name = lines[i].strip()
        if not name:
            i += 1
            continue
        name_line = i + 1
        if i + 1 >= len(lines):
            raise WiderFormatError(f"{path}:{name_line}: image {name!r} has no face count line")
        try:
            count = int(lines[i + 1].strip())
        except ValueError:
            raise WiderFormatError(
                f"{path}:{name_line + 1}: expected the face count of {name!r}, got "
                f"{lines[i + 1].strip()!r}") from None
        if count < 0:
            raise WiderFormatError(f"{path}:{name_line + 1}: negative face count {count}")
        n_lines = max(count, 1)  # a count of 0 is followed by one placeholder line
        if i + 2 + n_lines > len(lines):
            raise WiderFormatError(
                f"{path}:{name_line}: {name!r} announces {count} faces but the file ends early")
        boxes, ignore = [], []
        for k in range(count):
            lineno = i + 3 + k
            tokens = lines[lineno - 1].split()
            if len(tokens) < 4:
                raise WiderFormatError(
                    f"{path}:{lineno}: expected 'x y w h blur expression illumination invalid "
                    f"occlusion pose', got {len(tokens)} values")
            vals = _numbers(tokens, path, lineno)
            x, y, w, h = vals[:4]
            boxes.append([x, y, x + w, y + h])
            invalid = len(vals) >= 8 and vals[7] != 0
            # Degenerate boxes cannot be matched by IoU; they count as ignored, not as misses.
            ignore.append(invalid or w <= 0 or h <= 0)
        n = len(boxes)
        samples.append(WiderSample(images_dir / name, np.array(boxes, np.float32).reshape(-1, 4),
                                   np.full((n, 10), -1.0, np.float32), np.zeros(n, bool),
                                   ignore=np.array(ignore, bool), name=name))
        i += 2 + n_lines
    if not samples:
        raise WiderFormatError(f"{path}: no images")
    return samples


def read_difficulty_list(path: os.PathLike) -> dict[str, np.ndarray]:
    """Read a split list: image name -> 1-based indices of the faces in that difficulty.

    Text format: one line per image, ``<image path or name> <idx> <idx> ...``. ``.mat`` files are
    the official toolkit's (``event_list``, ``file_list``, ``gt_list``).
    """
    path = Path(path)
    if path.suffix == ".mat":
        return _read_difficulty_mat(path)
    out: dict[str, np.ndarray] = {}
    for lineno, raw in enumerate(_open_lines(path), start=1):
        tokens = raw.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        try:
            idx = np.array([int(t) for t in tokens[1:]], dtype=np.int64)
        except ValueError:
            raise WiderFormatError(
                f"{path}:{lineno}: expected '<image> <face index> ...' with integer indices, "
                f"got {raw.strip()!r}") from None
        if (idx < 1).any():
            raise WiderFormatError(f"{path}:{lineno}: face indices are 1-based, got {idx.min()}")
        out[tokens[0]] = idx
    return out


def _read_difficulty_mat(path: Path) -> dict[str, np.ndarray]:
    """The official toolkit's split file: per event, file names and kept 1-based face indices."""
    from face_perception.detection.matfile import load_mat

    mat = load_mat(path)
    for key in ("event_list", "file_list", "gt_list"):
        if key not in mat:
            raise WiderFormatError(f"{path}: not a WIDER split file (no {key})")
    out: dict[str, np.ndarray] = {}
    for event, files, gts in zip(mat["event_list"].ravel(), mat["file_list"].ravel(),
                                 mat["gt_list"].ravel()):
        for fname, gt in zip(files.ravel(), gts.ravel()):
            out[f"{event}/{fname}.jpg"] = np.asarray(gt, dtype=np.int64).ravel()
    return out


def read_mat_ground_truth(path: os.PathLike, images_dir: os.PathLike) -> list[WiderSample]:
    """Read the official ``wider_face_<split>.mat`` ground truth (boxes + invalid flags)."""
    from face_perception.detection.matfile import load_mat

    path = Path(path)
    mat = load_mat(path)
    for key in ("event_list", "file_list", "face_bbx_list"):
        if key not in mat:
            raise WiderFormatError(f"{path}: not a WIDER ground-truth file (no {key})")
    invalid_lists = mat.get("invalid_label_list")
    samples = []
    for e, (event, files, boxes) in enumerate(zip(mat["event_list"].ravel(),
                                                  mat["file_list"].ravel(),
                                                  mat["face_bbx_list"].ravel())):
        invalid = (invalid_lists.ravel()[e].ravel() if invalid_lists is not None
                   else [None] * files.size)
        for fname, xywh, inv in zip(files.ravel(), boxes.ravel(), invalid):
            xywh = np.asarray(xywh, np.float32).reshape(-1, 4)
            xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
            n = len(xyxy)
            ignore = (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
            if inv is not None:
                ignore |= np.asarray(inv).reshape(-1)[:n].astype(bool)
            name = f"{event}/{fname}.jpg"
            samples.append(WiderSample(Path(images_dir) / name, xyxy,
                                       np.full((n, 10), -1.0, np.float32), np.zeros(n, bool),
                                       ignore=ignore, name=name))
    if not samples:
        raise WiderFormatError(f"{path}: no images")
    return samples


def _stem(name: str) -> str:
    return Path(name).stem


def attach_difficulties(samples: list[WiderSample], lists: dict[str, dict[str, np.ndarray]]
                        ) -> None:
    """Set ``sample.subsets[difficulty]`` from split lists (keys may be full names or stems)."""
    for difficulty, table in lists.items():
        by_stem = {_stem(k): v for k, v in table.items()}
        for sample in samples:
            idx = table.get(sample.name)
            if idx is None:
                idx = by_stem.get(_stem(sample.name), np.zeros(0, np.int64))
            if len(idx) and idx.max() > len(sample):
                raise WiderFormatError(
                    f"{difficulty} split names face {idx.max()} of {sample.name}, which has "
                    f"only {len(sample)} faces")
            mask = np.zeros(len(sample), dtype=bool)
            mask[idx - 1] = True
            sample.subsets[difficulty] = mask


class WiderFaceDataset(Sequence):
    """WIDER FACE splits found under ``root`` (the seed's ``WiderFaceDataset(root, splits)``).

    For each split it looks for, in order:
    1. ``root/<split>/label.txt`` with images in ``root/<split>/images`` (RetinaFace layout);
    2. ``root/wider_face_split/wider_face_<split>_bbx_gt.txt`` with images in
       ``root/WIDER_<split>/images`` (official layout).
    Difficulty lists ``wider_{easy,medium,hard}_val.txt`` (or ``.mat``) are looked up in
    ``root``, ``root/<split>``, ``root/wider_face_split`` and ``root/eval_tools/ground_truth``.
    """

    def __init__(self, root: os.PathLike, splits: Sequence[str] = ("train",)):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"WIDER root folder not found: {self.root}")
        if isinstance(splits, str):
            splits = [splits]
        self.splits = list(splits)
        self.samples: list[WiderSample] = []
        for split in self.splits:
            self.samples.extend(self._load_split(split))

    def _load_split(self, split: str) -> list[WiderSample]:
        label = self.root / split / "label.txt"
        official = self.root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
        official_mat = [self.root / folder / f"wider_face_{split}.mat"
                        for folder in ("wider_face_split", "eval_tools/ground_truth")]
        official_mat = [p for p in official_mat if p.is_file()]
        images = self.root / f"WIDER_{split}" / "images"
        if label.is_file():
            samples = read_label_file(label)
        elif official.is_file():
            samples = read_bbx_gt(official, images)
        elif official_mat:
            samples = read_mat_ground_truth(official_mat[0], images)
        else:
            raise FileNotFoundError(
                f"no annotations for split {split!r} under {self.root}: expected {label}, "
                f"{official} or wider_face_split/wider_face_{split}.mat")
        lists = {}
        for difficulty in DIFFICULTIES:
            found = self._find_split_list(split, difficulty)
            if found is not None:
                lists[difficulty] = read_difficulty_list(found)
        if lists:
            attach_difficulties(samples, lists)
        return samples

    def _find_split_list(self, split: str, difficulty: str) -> Optional[Path]:
        folders = [self.root, self.root / split, self.root / "wider_face_split",
                   self.root / "eval_tools" / "ground_truth"]
        for folder in folders:
            for ext in (".txt", ".mat"):
                cand = folder / f"wider_{difficulty}_{split}{ext}"
                if cand.is_file():
                    return cand
        return None

    @classmethod
    def from_label_file(cls, label_file: os.PathLike,
                        images_dir: Optional[os.PathLike] = None) -> WiderFaceDataset:
        """A dataset from one RetinaFace ``label.txt`` anywhere on disk."""
        self = cls.__new__(cls)
        self.root = Path(label_file).parent
        self.splits = [Path(label_file).parent.name]
        self.samples = read_label_file(label_file, images_dir)
        return self

    @classmethod
    def from_samples(cls, samples: Sequence[WiderSample]) -> WiderFaceDataset:
        self = cls.__new__(cls)
        self.root = Path(samples[0].image_path).parent if samples else Path(".")
        self.splits = []
        self.samples = list(samples)
        return self

    @property
    def difficulties(self) -> list[str]:
        """Difficulties that every sample has a mask for (empty without split lists)."""
        return [d for d in DIFFICULTIES if self.samples and all(d in s.subsets
                                                                for s in self.samples)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return WiderFaceDataset.from_samples(self.samples[index])
        return self.samples[index]

    def __iter__(self) -> Iterator[WiderSample]:
        return iter(self.samples)


def write_label_file(path: os.PathLike, samples: Sequence[WiderSample]) -> None:
    """Write samples as a RetinaFace training ``label.txt`` (image names relative to images/)."""
    lines = []
    for s in samples:
        lines.append(f"# {s.name}")
        for box, lm, has in zip(s.boxes, s.landmarks, s.has_landmarks):
            x1, y1, x2, y2 = (float(v) for v in box)
            parts = [f"{x1:.1f}", f"{y1:.1f}", f"{x2 - x1:.1f}", f"{y2 - y1:.1f}"]
            if has:
                for px, py in lm.reshape(5, 2):
                    parts += [f"{px:.3f}", f"{py:.3f}", "0.0"]
                parts.append("1.0")
            else:
                parts += ["-1.0"] * 15 + ["-1.0"]
            lines.append(" ".join(parts))
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
