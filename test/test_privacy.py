"""Personal data: gallery files owner-only, `gallery remove` leaves no copy, anonymised images
no longer identify anyone (real photos, the shipped detector and embedder)."""
import os
import stat
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face_perception.gallery import Gallery
from face_perception.recognition import Recognizer
from face_perception.rendering import anonymize, cover_box, hidden_faces
from face_perception.types import Category


def gallery_of(names, size=8):
    g = Gallery("privacy-test-model", size)
    rng = np.random.default_rng(0)
    for name in names:
        g.add(name, rng.normal(size=(2, size)).astype(np.float32))
    return g


def test_gallery_files_are_owner_only(tmp_path):
    old = os.umask(0o022)  # a usual umask: without care the files would be world-readable
    try:
        index = gallery_of(["ann", "bob"]).save(tmp_path / "people.json")
    finally:
        os.umask(old)
    files = sorted(tmp_path.iterdir())
    assert len(files) == 2 and index in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_gallery_remove_leaves_no_copy_behind(tmp_path):
    index = gallery_of(["ann", "bob", "carl"]).save(tmp_path / "people.json")
    before = {p.name for p in tmp_path.iterdir()}
    out = subprocess.run([sys.executable, "-m", "face_perception.cli", "gallery", "remove",
                          str(index), "bob"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    after = sorted(tmp_path.iterdir())
    arrays = [p for p in after if p.suffix == ".npz"]
    # One index, one arrays file: the old arrays file (holding bob) was deleted, no temp file.
    assert len(after) == 2 and len(arrays) == 1, after
    assert arrays[0].name not in before
    with np.load(arrays[0], allow_pickle=False) as npz:
        assert list(npz["names"]) == ["ann", "carl"]
        assert npz["samples"].shape[0] == 4
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in after)
    assert "bob" not in index.read_text()


@pytest.fixture(scope="module")
def obama_setup(photos, core_detector, dlib_embedder, enroll):
    gallery = enroll()
    rec = Recognizer(dlib_embedder, gallery, detector=core_detector)
    img = cv2.imread(str(photos / "obama2.jpg"))
    faces = core_detector.detect(img)
    assert len(faces) == 1
    return rec, img, faces


def similarity_to(rec, img, faces, name):
    emb = rec.embed(img, faces)[0]
    ranked = dict(rec.gallery.search(emb, k=len(rec.gallery))[0])
    return ranked[name]


@pytest.mark.parametrize("style", ["pixelate", "blur"])
def test_anonymised_face_is_no_longer_recognised(obama_setup, style):
    rec, img, faces = obama_setup
    threshold = rec.threshold
    before = similarity_to(rec, img, faces, "obama")
    assert before >= threshold and rec.identify(img, faces)[0].name == "obama"
    hidden = anonymize(img, faces, mode="all", style=style)
    # The strongest case: embedded at the original landmarks, as if the viewer knew where.
    after = similarity_to(rec, hidden, faces, "obama")
    print(f"{style}: similarity to obama {before:.3f} -> {after:.3f} "
          f"(threshold {threshold:.3f})")
    assert after < threshold - 0.05
    assert rec.identify(hidden, faces)[0] is None
    # Every pixel of the detector's box lies inside the hidden region; nothing else changed.
    x1, y1, x2, y2 = cover_box(faces[0], img.shape)
    bx1, by1, bx2, by2 = faces[0].box[:4]
    assert x1 <= bx1 and y1 <= by1 and x2 >= bx2 and y2 >= by2
    outside = np.ones(img.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    np.testing.assert_array_equal(hidden[outside], img[outside])
    if style == "pixelate":  # the box holds no more than 8 x 8 cells of flat colour
        box = hidden[int(by1):int(by2), int(bx1):int(bx2)].reshape(-1, 3)
        assert len(np.unique(box, axis=0)) <= 64


def test_unknown_mode_hides_only_unnamed_faces(obama_setup):
    rec, img, faces = obama_setup
    named = [Category("obama", 0.97)]
    np.testing.assert_array_equal(anonymize(img, faces, named, mode="unknown"), img)
    assert hidden_faces(faces, [None], "unknown") == list(faces)
    assert not np.array_equal(anonymize(img, faces, [None], mode="unknown"), img)
    np.testing.assert_array_equal(anonymize(img, faces, None, mode="none"), img)
    with pytest.raises(ValueError, match="anonymize mode"):
        anonymize(img, faces, mode="some")


def test_video_cli_anonymizes_every_face(photos, tmp_path, core_detector):
    from face_perception.cli import main

    frame = cv2.resize(cv2.imread(str(photos / "obama2.jpg")), (640, 480))
    src = tmp_path / "in.mp4"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for _ in range(3):
        writer.write(frame)
    writer.release()
    out = tmp_path / "out.mp4"
    assert main(["video", str(src), "--out", str(out), "--anonymize", "all",
                 "--no-progress"]) == 0
    cap = cv2.VideoCapture(str(out))
    ok, shown = cap.read()
    cap.release()
    assert ok
    assert core_detector.detect(frame) and not core_detector.detect(shown)
