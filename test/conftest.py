"""Shared test set-up: a private DDS world per run, the real photos the set-up installs, a ROS
listener, the recognizer's real models and a gallery enrolled from the photos."""
from __future__ import annotations

import http.server
import os
import random
import threading
from pathlib import Path

import pytest

from face_perception.data.sample_photos import sample_photos_dir

REPO = Path(__file__).resolve().parents[1]

# Loopback-only discovery and a random domain, so concurrent runs never hear each other.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))

# Who enrolls from which photo in the galleries tests make (the other photos are queries).
ENROLL = (("obama", "obama.jpg"), ("biden", "biden.jpg"))


@pytest.fixture(scope="session")
def photos() -> Path:
    return sample_photos_dir()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="module")
def ros():
    """rclpy for this module and a Listener node spun in the background (test/ros_harness)."""
    import rclpy

    from test.ros_harness import Listener

    rclpy.init()
    listener = Listener(f"test_listener_{os.getpid()}")
    yield listener
    listener.close()
    rclpy.shutdown()


@pytest.fixture()
def ros_context():
    """An rclpy context of this test only, for nodes run in-process by the test's executor."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture(scope="session")
def core_detector():
    """The default RetinaFace Detector (ONNX Runtime, CPU)."""
    from face_perception.detection import Detector
    return Detector()


@pytest.fixture(scope="session")
def dlib_embedder():
    """The shipped dlib ResNet embedder on ONNX Runtime."""
    from face_perception.recognition import Embedder
    return Embedder("dlib_resnet", backend="onnx")


@pytest.fixture(scope="session")
def enroll(photos, core_detector, dlib_embedder):
    """enroll(people=ENROLL, model_id=None) -> a Gallery with one photo per person, enrolled
    through the Recognizer's own detect + embed path (model_id: another model's label)."""
    import cv2

    from face_perception.gallery import Gallery
    from face_perception.recognition import Recognizer
    from face_perception.recognition.recognizer import model_id_of

    rec = Recognizer(dlib_embedder, None, detector=core_detector)

    def make(people=ENROLL, model_id=None):
        gallery = Gallery(model_id or model_id_of(dlib_embedder.meta),
                          int(dlib_embedder.meta.embedding_size))
        for name, photo in people:
            img = cv2.imread(str(photos / photo))
            (face,) = core_detector.detect(img)
            gallery.add(name, rec.embed(img, [face]))
        return gallery
    return make


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
