"""Model downloads: real HTTP against a local server, sha256, resume, atomic write, clear errors."""
import hashlib
import http.server
import threading

import pytest

from face_perception.download import DownloadError, download_file

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(http.server.BaseHTTPRequestHandler):
    fail_after = None  # bytes to send before dropping the connection once

    def do_GET(self):  # noqa: N802 - http.server API
        if self.path != "/model.bin":
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).fail_after is not None:
            self.wfile.write(body[:type(self).fail_after])
            type(self).fail_after = None
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    handler = type("Handler", (RangeHandler,), {})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield handler, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


SHA = hashlib.sha256(PAYLOAD).hexdigest()


def test_download_verifies_and_writes_atomically(server, tmp_path):
    _, base = server
    dest = download_file(f"{base}/model.bin", tmp_path / "m.bin", SHA)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "m.bin.part").exists()


def test_interrupted_download_resumes(server, tmp_path):
    handler, base = server
    handler.fail_after = 300_000
    with pytest.raises(DownloadError, match="resume"):
        download_file(f"{base}/model.bin", tmp_path / "m.bin", SHA)
    assert not (tmp_path / "m.bin").exists()
    assert (tmp_path / "m.bin.part").stat().st_size == 300_000
    download_file(f"{base}/model.bin", tmp_path / "m.bin", SHA)
    assert (tmp_path / "m.bin").read_bytes() == PAYLOAD


def test_checksum_mismatch_is_refused(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        download_file(f"{base}/model.bin", tmp_path / "m.bin", "0" * 64)
    assert not (tmp_path / "m.bin").exists()
    assert not (tmp_path / "m.bin.part").exists()


def test_missing_file_and_offline_give_clear_errors(server, tmp_path):
    _, base = server
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{base}/nope.bin", tmp_path / "x.bin", SHA)
    with pytest.raises(DownloadError, match="cannot reach"):
        download_file("http://127.0.0.1:9/model.bin", tmp_path / "y.bin", SHA, timeout=2)


