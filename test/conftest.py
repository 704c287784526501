"""Shared test set-up: a private DDS world per run and the real photos the set-up installs."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Loopback-only discovery and a random domain, so concurrent runs never hear each other.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))


def photos_dir() -> Path:
    """Folder of the face_recognition sdist's test photos (installed by scripts/setup_env.sh)."""
    env = os.environ.get("FACE_PERCEPTION_TEST_IMAGES")
    candidates = [Path(env)] if env else []
    candidates += [Path(sys.prefix) / "share/face_perception/test_images",
                   REPO / ".venv/share/face_perception/test_images"]
    for cand in candidates:
        if (cand / "obama.jpg").is_file():
            return cand
    raise FileNotFoundError(
        "test photos not found; run scripts/setup_env.sh (make test does) or set "
        "FACE_PERCEPTION_TEST_IMAGES")


@pytest.fixture(scope="session")
def photos() -> Path:
    return photos_dir()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO
