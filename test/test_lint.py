"""Code style is a test: ruff over the package, tests, benchmarks and launch files."""
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_no_problems():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    targets = [p for p in ("face_perception", "test", "benchmarks", "launch", "setup.py")
               if (REPO / p).exists()]
    out = subprocess.run([ruff, "check", *targets], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
