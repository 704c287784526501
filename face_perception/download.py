"""Fetch published model files over HTTP(S): sha256-verified, resumable, written atomically.

Nothing in the package downloads at import or inference time; only explicit ``download()`` calls
reach this module. Offline or unreachable servers give a DownloadError that names the URL.
"""
from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Optional

from face_perception.files import CHUNK, sha256_file


class DownloadError(RuntimeError):
    """A download that could not be completed or did not verify."""


def download_file(url: str, dest: os.PathLike, sha256: Optional[str] = None, *,
                  timeout: float = 30.0,
                  progress: Optional[Callable[[int, Optional[int]], None]] = None) -> Path:
    """Download ``url`` to ``dest``.

    An existing ``dest`` whose sha256 matches is kept as is. A partial ``dest.part`` left by an
    interrupted run is resumed with an HTTP Range request (restarted if the server ignores it).
    The file only appears at ``dest`` once complete and verified (rename of the .part file), so a
    crash never leaves a truncated file under the final name.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists() and sha256 and sha256_file(dest) == sha256.lower():
        return dest
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "face_perception"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # already complete on disk
            response = None
        else:
            raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"cannot reach {url} ({getattr(exc, 'reason', exc)}); check the network or download "
            f"the file by hand and place it at {dest}") from exc
    if response is not None:
        with response:
            resumed = offset and response.status == 206
            mode = "ab" if resumed else "wb"
            done = offset if resumed else 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            try:
                with open(part, mode) as fh:
                    while True:
                        block = response.read(CHUNK)
                        if not block:
                            break
                        fh.write(block)
                        done += len(block)
                        if progress:
                            progress(done, total)
            except (OSError, urllib.error.URLError) as exc:
                raise DownloadError(
                    f"download of {url} interrupted after {done} bytes; run again to resume "
                    f"({exc})") from exc
            if total is not None and done < total:
                raise DownloadError(
                    f"download of {url} ended early ({done} of {total} bytes); run again to resume")
    if sha256:
        got = sha256_file(part)
        if got != sha256.lower():
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"sha256 mismatch for {url}: expected {sha256.lower()}, got {got}; "
                "the partial file was removed")
    shutil.move(str(part), str(dest))
    return dest
