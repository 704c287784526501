"""The one form of the commands' lines on stderr: ``face-perception COMMAND: KIND: message``
(KIND error, warning or note), each message naming the offending file once."""
from __future__ import annotations

import sys


def report(command: str, message: str, kind: str = "error") -> None:
    print(f"face-perception {command}: {kind}: {message}", file=sys.stderr)


def naming_file(path, message: str) -> str:
    """``message`` about ``path``, prefixed with the path unless it names it already (the
    library's ImageError messages do)."""
    return message if str(path) in message else f"{path}: {message}"
