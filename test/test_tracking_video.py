"""``face-perception video``: a real video file made from the photos in, an annotated video and
JSON Lines out, names per track; bad input refused with nothing written."""
import json

import cv2
import pytest

from face_perception.cli import main
from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.recognition import Embedder
from test.tracking_scenes import Cutouts, scene


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    """A 30-frame mp4 of two people crossing, and a gallery of both."""
    folder = tmp_path_factory.mktemp("video")
    detector = Detector()
    frames = scene(Cutouts(photos, detector), 30,
                   lambda i: [("obama", 80 + 15 * i, 220, 100), ("biden", 560 - 15 * i, 260, 100)])
    path = folder / "in.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480))
    for f in frames:
        writer.write(f.image)
    writer.release()
    emb = Embedder("dlib_resnet", backend="onnx")
    gallery = Gallery(emb.meta.name, emb.meta.embedding_size)
    for person in ("obama", "biden"):
        img = read_image_bgr(photos / f"{person}.jpg")
        gallery.add(person, emb.embed_faces(img, detector.detect(img)[:1]))
    gallery.save(folder / "people.json")
    return path, folder / "people.json"


def test_video_is_annotated_and_every_frame_has_a_json_line(clip, tmp_path, capsys):
    video, gallery = clip
    out = tmp_path / "out.mp4"
    assert main(["video", str(video), "--gallery", str(gallery), "--out", str(out), "--json",
                 "--no-progress"]) == 0
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 30
    cap.release()
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(30))
    stamps = [x["stamp_ns"] for x in lines]
    assert stamps == sorted(stamps) and stamps[-1] - stamps[0] == pytest.approx(29e9 / 30, rel=0.01)
    last = sorted(lines[-1]["faces"], key=lambda f: f["box"][0])
    assert [f["name"] for f in last] == ["biden", "obama"]
    assert all(f["track_id"] is not None and f["confidence"] > 0.9 for f in last)
    ids = {f["track_id"] for x in lines[3:] for f in x["faces"] if f["track_id"] is not None}
    assert len(ids) == 2
    wrong = [f for x in lines for f in x["faces"] if f["name"] not in (None, "obama", "biden")]
    # Offline (the default for files): each track's name is written on all of its frames,
    # from the first, with the track's id.
    assert wrong == [] and all(x["identity_mode"] == "offline" for x in lines)
    assert all(f["name"] is not None and f["track_id"] is not None for f in lines[0]["faces"])
    assert "frames: 30" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.mp4"]
    # Live: a frame is named from the frames before it only, so the first frames are unknown
    # and fewer faces are named than offline.
    assert main(["video", str(video), "--gallery", str(gallery), "--out",
                 str(tmp_path / "live.mp4"), "--json", "--no-progress",
                 "--identity-mode", "live"]) == 0
    live = [json.loads(x) for x in (tmp_path / "live.jsonl").read_text().splitlines()]
    assert all(x["identity_mode"] == "live" for x in live)
    assert live[0]["faces"][0]["name"] is None and live[0]["faces"][0]["track_id"] is None
    assert {f["name"] for f in live[-1]["faces"]} == {"obama", "biden"}
    assert "(live identities)" in capsys.readouterr().out

    def named(rows):
        return sum(f["name"] is not None for x in rows for f in x["faces"])
    assert named(lines) >= named(live) + 4, (named(lines), named(live))


def test_missing_input_and_bad_output_name_are_refused(tmp_path, capsys):
    assert main(["video", str(tmp_path / "none.mp4"), "--out", str(tmp_path / "o.mp4")]) == 2
    assert "video file not found" in capsys.readouterr().err
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert main(["video", str(tmp_path / "junk.mp4"), "--out", str(tmp_path / "o.mp4"),
                 "--no-progress"]) == 2
    assert main(["video", str(tmp_path / "junk.mp4"), "--out", str(tmp_path / "o.txt")]) == 2
    assert "--out must end in" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.mp4"]


def test_offline_names_nobody_in_a_track_whose_person_changes(photos, tmp_path, capsys):
    """A tracker's id switch (obama, then biden in the same place without motion: one track):
    the whole-track decision sees both people and names neither, never biden as obama."""
    from test.enrolment_clips import switch_clip, write_video

    detector = Detector()
    video = write_video(switch_clip(Cutouts(photos, detector)), tmp_path / "switch.avi")
    emb = Embedder("dlib_resnet", backend="onnx")
    gallery = Gallery(emb.meta.name, emb.meta.embedding_size)
    img = read_image_bgr(photos / "obama.jpg")
    gallery.add("obama", emb.embed_faces(img, detector.detect(img)[:1]))
    gallery.save(tmp_path / "obama.json")
    out = tmp_path / "out.mp4"
    assert main(["video", str(video), "--gallery", str(tmp_path / "obama.json"), "--out",
                 str(out), "--json", "--no-progress"]) == 0
    lines = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    faces = [f for x in lines for f in x["faces"]]
    assert len(lines) == 24 and len(faces) == 24
    assert {f["track_id"] for f in faces[3:]} == {"1"}  # one track holds both people
    assert [f["name"] for f in faces] == [None] * 24
    assert "offline identities" in capsys.readouterr().out
