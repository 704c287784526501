"""Where the shipped sample photos are (face_recognition's test photos: obama.jpg, biden.jpg, ...).

scripts/setup_env.sh installs them into ``<venv>/share/face_perception/test_images``; the tests,
benchmarks and the demo all find them here.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

ENV_VAR = "FACE_PERCEPTION_TEST_IMAGES"


def sample_photos_dir() -> Path:
    """The folder holding obama.jpg & co. ($FACE_PERCEPTION_TEST_IMAGES, else the venv's)."""
    env = os.environ.get(ENV_VAR)
    candidates = [Path(env)] if env else []
    candidates.append(Path(sys.prefix) / "share/face_perception/test_images")
    for cand in candidates:
        if (cand / "obama.jpg").is_file():
            return cand
    raise FileNotFoundError(
        f"sample photos not found in {', '.join(map(str, candidates))}; run "
        f"scripts/setup_env.sh (make setup does) or set {ENV_VAR}")
