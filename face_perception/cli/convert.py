"""``face-perception convert SRC DEST``: ImageFolder <-> RecordIO, verification .bin <-> pairs.

The direction follows from SRC: a RecordIO folder (train.rec + train.idx) becomes an
ImageFolder, any other folder of identity sub-folders becomes RecordIO, a ``.bin`` becomes an
image folder with ``pairs.txt``, and a pair list (or a folder holding ``pairs.txt``) with a
DEST ending in ``.bin`` becomes a ``.bin``. Image bytes are copied unchanged
(``face_perception.data.convert``).
"""
from __future__ import annotations

import json
from pathlib import Path

from face_perception.cli import add_command


def conversion_of(src: Path, dest: Path) -> str:
    """'recordio-to-imagefolder', 'imagefolder-to-recordio', 'bin-to-pairs' or
    'pairs-to-bin' for these paths (clear error when none applies)."""
    from face_perception.data.convert import PAIRS_FILE

    if not src.exists():
        raise FileNotFoundError(f"convert: source not found: {src}")
    if dest.suffix.lower() == ".bin":
        if src.is_file() and src.suffix.lower() != ".bin" or (src / PAIRS_FILE).is_file():
            return "pairs-to-bin"
        raise ValueError(f"a .bin destination needs a pair list (or a folder with "
                         f"{PAIRS_FILE}) as source, got {src}")
    if src.is_file():
        if src.suffix.lower() == ".bin":
            return "bin-to-pairs"
        raise ValueError(f"cannot convert the file {src}: give a .bin, or a pair list with a "
                         ".bin destination")
    if (src / "train.rec").is_file() and (src / "train.idx").is_file():
        return "recordio-to-imagefolder"
    return "imagefolder-to-recordio"


def run_convert(args) -> int:
    """Convert SRC into DEST, copying encoded images unchanged. SRC is an ImageFolder (->
    InsightFace train.rec/.idx/property + train.lst), a RecordIO folder (-> ImageFolder, names
    from train.lst when present), a verification .bin (-> image folder + LFW pairs.txt) or a pair
    list / folder with pairs.txt (-> DEST.bin). DEST must not exist (or be an empty folder); it
    appears only when the conversion is complete."""
    from face_perception.data import convert

    src, dest = Path(args.src), Path(args.dest)
    kind = conversion_of(src, dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"destination exists (not overwritten): {dest}")
    if kind == "pairs-to-bin":
        report = convert.pairs_to_bin(src, dest, images_root=args.images_root)
    else:
        report = {"recordio-to-imagefolder": convert.recordio_to_imagefolder,
                  "imagefolder-to-recordio": convert.imagefolder_to_recordio,
                  "bin-to-pairs": convert.bin_to_pairs}[kind](src, dest)
    report["conversion"] = kind
    if args.json:
        print(json.dumps(report))
    else:
        counts = ", ".join(f"{report[k]} {k}" for k in ("pairs", "images", "identities")
                           if k in report)
        print(f"{kind}: {src} -> {dest} ({counts})")
        for path in report.get("skipped", []):
            print(f"  skipped (not an image in an identity folder): {path}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "convert", run_convert,
                    "convert datasets: ImageFolder <-> RecordIO, .bin <-> image pairs")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    p.add_argument("--images-root", metavar="DIR",
                   help="image folder of a pair list (default: the list's folder, or its "
                        "lfw/ sub-folder when there is one)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
