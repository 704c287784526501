"""The pages name only files and modules that exist: every repository path and every
``face_perception.<module>`` in README.md and docs/*.md resolves in this tree."""
from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
TOP = ("face_perception/", "docs/", "test/", "benchmarks/", "scripts/", "config/", "launch/",
       "interfaces/", "resource/")
PATH_RE = re.compile(r"(?<![\w./-])((?:%s)[\w./-]*\w)" % "|".join(re.escape(t) for t in TOP))
MODULE_RE = re.compile(r"(?<![\w./])face_perception(?:\.[A-Za-z_]\w*)+")


def repo_paths(text: str) -> set[str]:
    found = set()
    for match in PATH_RE.finditer(text):
        path = match.group(1).rstrip(".")
        if any(ch in path for ch in "*<>{}") or path.endswith("/"):
            continue
        if match.end() < len(text) and text[match.end()] == "*":
            continue  # a glob such as test/test_ros_*.py
        found.add(path)
    return found


def module_exists(dotted: str) -> bool:
    """True when ``dotted`` is a module, or an attribute path whose longest module prefix
    exists (``face_perception.recognition.open_set.OpenSetRule``)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            if importlib.util.find_spec(name) is not None:
                return n == len(parts) or _has_attribute(name, parts[n:])
        except ModuleNotFoundError:
            continue
    return False


def _has_attribute(module: str, attrs: list[str]) -> bool:
    obj = importlib.import_module(module)
    for attr in attrs:
        if not hasattr(obj, attr):
            return False
        obj = getattr(obj, attr)
    return True
