"""The image files a command was given (files, and folders of images), read one at a time, and
the annotated copies it writes: a file that cannot be read, whose work fails with ValueError or
OSError, or whose copy cannot be written gets one error line and is counted; the others are
still processed (the command then exits 1)."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

from face_perception.cli.messages import naming_file, report

# Inputs whose suffix the annotated copy keeps; others are written as PNG.
KEPT_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class ImageFiles:
    """``paths`` of ``command``; annotated copies go to ``out_dir`` (made when missing; None:
    none written) as ``<stem>_<tag><suffix>``, a number added where two inputs share a name."""

    def __init__(self, command: str, paths, out_dir=None, tag: str = "annotated"):
        from face_perception.imageio import expand_image_paths

        self.command = command
        self.files = expand_image_paths(paths)
        self.failed = 0
        self.out_dir = Path(out_dir) if out_dir else None
        self.tag = tag
        self._written: set = set()
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)

    def none_given(self) -> bool:
        """True (with the error line) when the arguments hold no image file (exit code 2)."""
        if not self.files:
            report(self.command, "no image files given")
        return not self.files

    def fail(self, message: str) -> None:
        self.failed += 1
        report(self.command, message)

    def each(self, work: Callable) -> Iterator[tuple[Path, object, object]]:
        """(path, BGR image, work(image)) of every file that could be read and worked on."""
        from face_perception.imageio import read_image_bgr

        for path in self.files:
            try:
                image = read_image_bgr(path)
                result = work(image)
            except (ValueError, OSError) as exc:
                self.fail(naming_file(path, str(exc)))
                continue
            yield path, image, result

    def write_annotated(self, src: Path, record: dict, draw: Callable, *draw_args) -> None:
        """When there is an out_dir: write ``draw(*draw_args)`` (the annotated image) as the
        copy of ``src`` and record its path in ``record['annotated']``."""
        import cv2

        if self.out_dir is None:
            return
        dest = self._destination(src)
        if cv2.imwrite(str(dest), draw(*draw_args)):
            record["annotated"] = str(dest)
        else:
            self.fail(f"cannot write {dest}")

    def _destination(self, src: Path) -> Path:
        suffix = src.suffix if src.suffix.lower() in KEPT_SUFFIXES else ".png"
        dest, n = self.out_dir / f"{src.stem}_{self.tag}{suffix}", 1
        while dest in self._written:
            dest, n = self.out_dir / f"{src.stem}_{self.tag}_{n}{suffix}", n + 1
        self._written.add(dest)
        return dest

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0
