"""Shared test set-up: a private DDS world per run and the real photos the set-up installs."""
from __future__ import annotations

import http.server
import os
import random
import sys
import threading
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


class _FilesHandler(http.server.BaseHTTPRequestHandler):
    """Serves the bytes a test put in ``files`` (URL path -> bytes); 404 for anything else."""

    files: dict = {}

    def do_GET(self):  # noqa: N802 - http.server API
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    """A real HTTP server on loopback for download tests: yields (files dict, base URL)."""
    handler = type("Handler", (_FilesHandler,), {"files": {}})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler.files, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def pytest_terminal_summary(terminalreporter):
    """Docs examples (test/test_docs.py): how many ran, and how many were skipped for what."""
    def docs(kind):
        return [r for r in terminalreporter.stats.get(kind, [])
                if getattr(r, "nodeid", "").startswith("test/test_docs.py::test_page_example")]

    ran = len(docs("passed")) + len(docs("failed"))
    skipped = docs("skipped")
    if not ran and not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    terminalreporter.section("docs examples")
    terminalreporter.line(f"{ran} examples ran ({len(docs('failed'))} failed), "
                          f"{len(skipped)} skipped")
    for reason, count in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])):
        terminalreporter.line(f"  skipped {count:3d}: {reason}")
