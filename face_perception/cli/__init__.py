"""The ``face-perception`` command: a thin argument parser over the core library.

Each sub-command family lives in its own module here and exposes ``register(subparsers)``, which
adds its parsers with ``set_defaults(func=handler)``; a handler returns the process exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional

from face_perception.cli.messages import report

# Modules that contribute sub-commands, in help order.
COMMAND_MODULES = ("detect", "recognition", "gallery", "detection_training", "train", "bag",
                   "video", "convert", "quantize", "model", "info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="face-perception",
        description="Face detection and recognition on images, folders and rosbags.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Expected user-facing failures (bad image, missing gallery, model mismatch): one line.
        report(args.command, str(exc))
        return 2


if __name__ == "__main__":
    sys.exit(main())
