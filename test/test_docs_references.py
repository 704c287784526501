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
TOP_ALTERNATIVES = "|".join(re.escape(t) for t in TOP)
PATH_RE = re.compile(rf"(?<![\w./-])((?:{TOP_ALTERNATIVES})[\w./-]*\w)")
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
    """True when ``dotted`` is a module, or a module followed by attributes it really has
    (``face_perception.recognition.Recognizer``, also through lazy exports)."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        try:
            if importlib.util.find_spec(name) is None:
                continue
        except ModuleNotFoundError:
            continue
        obj = importlib.import_module(name)
        for attr in parts[n:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_repository_path_a_page_names_exists(page):
    missing = sorted(p for p in repo_paths(page.read_text()) if not (REPO / p).exists())
    assert not missing, f"{page.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_module_a_page_names_exists(page):
    # face_perception.launch.py is a launch file's name, not a module.
    names = {n for n in MODULE_RE.findall(page.read_text()) if not n.endswith(".py")}
    missing = sorted(n for n in names if not module_exists(n))
    assert not missing, f"{page.name} names modules/attributes that do not exist: {missing}"
