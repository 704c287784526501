"""The ``face-perception`` command: a thin argument parser over the core library.

Each sub-command family lives in its own module here and exposes ``register(subparsers)``, which
adds its parsers with ``add_command`` (or ``set_defaults(func=handler)``); a handler returns the
process exit code.
"""
from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from typing import Optional

from face_perception.cli.messages import report

# Modules that contribute sub-commands, in help order.
COMMAND_MODULES = ("detect", "recognition", "gallery", "detection_training", "train", "bag",
                   "video", "convert", "quantize", "model", "info")


def add_command(sub, name: str, func, help: str, **options) -> argparse.ArgumentParser:
    """The parser of sub-command ``name`` run by ``func``, whose docstring is the command's
    description in ``--help`` (one text for readers of the code and of the help)."""
    description = inspect.cleandoc(func.__doc__) if func.__doc__ else None
    p = sub.add_parser(name, help=help, description=description, **options)
    p.set_defaults(func=func)
    return p


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
