"""files.py: atomic writes keep the old file on failure and give normal permission bits."""
from __future__ import annotations

import os

import pytest

from face_perception.files import atomic_path, atomic_write_text


def test_atomic_write_permissions_follow_the_umask_unless_a_mode_is_given(tmp_path):
    old = os.umask(0o027)
    try:
        plain = atomic_write_text(tmp_path / "plain.txt", "a")
    finally:
        os.umask(old)
    private = atomic_write_text(tmp_path / "private.txt", "b", mode=0o600)
    assert oct(plain.stat().st_mode & 0o777) == oct(0o640)
    assert oct(private.stat().st_mode & 0o777) == oct(0o600)
    assert plain.read_text() == "a" and private.read_text() == "b"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "data.json", "old")
    with pytest.raises(RuntimeError, match="writer failed"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]
