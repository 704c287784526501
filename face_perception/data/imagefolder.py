"""ImageFolder trees: ``root/<identity>/<images>``, listed with a report of what was skipped.

Listing does not decode images (fast on large trees); ``check_images=True`` also decodes each
file header so that corrupt files are reported instead of failing later.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Tuple, Union

from face_perception.data.errors import DatasetError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff",
                              ".ppm", ".pgm", ".pbm"})


@dataclass
class ImageFolder:
    """The usable images of an ImageFolder tree.

    identities: sorted identity names (sub-folders with at least one image);
    samples: (image path, identity index) sorted by identity then path;
    skipped: (path, reason) for every file or folder that was left out;
    empty_identities: sub-folders with no usable image.
    """

    root: Path
    identities: List[str]
    samples: List[Tuple[Path, int]]
    skipped: List[Tuple[Path, str]] = field(default_factory=list)
    empty_identities: List[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.samples)

    def images_of(self, identity: str) -> List[Path]:
        try:
            label = self.identities.index(identity)
        except ValueError:
            raise DatasetError(f"no identity {identity!r} in {self.root}") from None
        return [p for p, i in self.samples if i == label]

    def by_identity(self) -> Dict[str, List[Path]]:
        out: Dict[str, List[Path]] = {name: [] for name in self.identities}
        for path, label in self.samples:
            out[self.identities[label]].append(path)
        return out

    def report(self) -> str:
        """Human-readable summary, listing each skipped file with its reason."""
        lines = [f"{self.root}: {len(self.samples)} images of {len(self.identities)} identities"]
        if self.empty_identities:
            lines.append(f"identities without images ({len(self.empty_identities)}): "
                         + ", ".join(self.empty_identities))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)}:")
            lines += [f"  {p}: {why}" for p, why in self.skipped]
        return "\n".join(lines)


def list_image_folder(root: Union[str, os.PathLike],
                      extensions: Iterable[str] = IMAGE_EXTENSIONS,
                      check_images: bool = False, min_images: int = 1) -> ImageFolder:
    """List ``root/<identity>/**/<image>``; identities with fewer than ``min_images`` are
    reported in ``empty_identities``/``skipped`` and left out.

    Raises FileNotFoundError / NotADirectoryError for a bad root and DatasetError when no
    identity has a usable image.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"image folder not found: {root}")
    if not root.is_dir():
        raise NotADirectoryError(f"not a folder (expected root/<identity>/<images>): {root}")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    skipped: List[Tuple[Path, str]] = []
    identity_dirs: List[Path] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            skipped.append((entry, "hidden"))
        elif entry.is_dir():
            identity_dirs.append(entry)
        else:
            skipped.append((entry, "file outside any identity folder"))
    if not identity_dirs:
        raise DatasetError(f"{root} has no identity sub-folders; expected "
                           "root/<identity name>/<image files>")
    identities: List[str] = []
    samples: List[Tuple[Path, int]] = []
    empty: List[str] = []
    for folder in identity_dirs:
        images = _images_in(folder, exts, check_images, skipped)
        if len(images) < max(min_images, 1):
            empty.append(folder.name)
            if images:
                skipped.append((folder, f"only {len(images)} image(s), fewer than {min_images}"))
            continue
        label = len(identities)
        identities.append(folder.name)
        samples += [(p, label) for p in images]
    if not samples:
        raise DatasetError(f"{root} has no usable images in its {len(identity_dirs)} identity "
                           f"folder(s) (extensions {', '.join(sorted(exts))}); "
                           f"{len(skipped)} entries skipped")
    return ImageFolder(root, identities, samples, skipped, empty)


def _images_in(folder: Path, exts, check: bool, skipped: list) -> List[Path]:
    images: List[Path] = []
    # Symlinked sub-folders are not followed (a link loop would never end); a symlinked
    # identity folder itself is fine.
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in sorted(dirnames):
            if d.startswith("."):
                skipped.append((Path(dirpath) / d, "hidden"))
            elif (Path(dirpath) / d).is_symlink():
                skipped.append((Path(dirpath) / d, "symlinked folder not followed"))
        dirnames[:] = sorted(d for d in dirnames
                             if not d.startswith(".") and not (Path(dirpath) / d).is_symlink())
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if name.startswith("."):
                skipped.append((path, "hidden"))
            elif path.suffix.lower() not in exts:
                skipped.append((path, f"not an image extension ({path.suffix or 'none'})"))
            elif check and not _decodes(path):
                skipped.append((path, "cannot be decoded as an image"))
            else:
                images.append(path)
    return images


def _decodes(path: Path) -> bool:
    import cv2
    import numpy as np

    data = np.fromfile(path, dtype=np.uint8)
    return data.size > 0 and cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_8) is not None
