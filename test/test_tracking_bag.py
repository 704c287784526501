"""``face-perception bag`` tracks by default: a real bag of a scene made from the photos, names
per track (unknown until the evidence is clear), none wrong; --no-tracking judges each frame."""

from face_perception.bag import rosbag_io
from face_perception.cli import main
from face_perception.detection import Detector
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.messages.face_fields import LANDMARK_CLASS_IDS
from face_perception.recognition import Embedder
from test.tracking_scenes import Cutouts, scene


def test_bag_names_tracks_from_accumulated_evidence(photos, tmp_path, capsys):
    detector = Detector()
    frames = scene(Cutouts(photos, detector), 20,
                   lambda i: [("obama", 100 + 10 * i, 220, 100), ("biden", 520 - 10 * i, 260, 100)])
    store = rosbag_io.typestore()
    writer = rosbag_io.open_writer(tmp_path / "in", "mcap")
    conn = writer.add_connection("/cam/image", rosbag_io.IMAGE, typestore=store)
    for f in frames:
        msg = rosbag_io.image_message(f.image, rosbag_io.header(f.stamp_ns, "cam"))
        writer.write(conn, f.stamp_ns, store.serialize_cdr(msg, rosbag_io.IMAGE))
    writer.close()
    emb = Embedder("dlib_resnet", backend="onnx")
    gallery = Gallery(emb.meta.name, emb.meta.embedding_size)
    for person in ("obama", "biden"):
        img = read_image_bgr(photos / f"{person}.jpg")
        gallery.add(person, emb.embed_faces(img, detector.detect(img)[:1]))
    gallery.save(tmp_path / "people.json")
    args = ["bag", str(tmp_path / "in"), "--image-topic", "/cam/image", "--gallery",
            str(tmp_path / "people.json")]
    assert main(args + ["--output", str(tmp_path / "tracked"), "--identity-mode", "live"]) == 0
    tracked = capsys.readouterr().out
    assert main(args + ["--output", str(tmp_path / "alone"), "--no-tracking"]) == 0
    alone = capsys.readouterr().out
    assert main(args + ["--output", str(tmp_path / "offline")]) == 0
    offline = capsys.readouterr().out
    # Alone, every face of every frame is named; tracked live, the first frames of each track
    # are unknown while evidence accumulates, then the right name; offline (the default), each
    # track's name is on all of its frames; no other name appears.
    faces_alone, names_alone, unknown_alone = summary(alone)
    faces, names, unknown = summary(tracked)
    assert faces == faces_alone >= 38
    assert set(names_alone) == set(names) == {"obama", "biden"} and unknown_alone <= 2
    assert sum(names.values()) + unknown == faces and 4 <= unknown <= 20, tracked
    assert "identity mode: live" in tracked and "identity mode: offline" in offline
    faces_off, names_off, unknown_off = summary(offline)
    assert faces_off == faces and set(names_off) == {"obama", "biden"} and unknown_off == 0
    assert "face_perception.identity_mode: offline" in \
        (tmp_path / "offline" / "metadata.yaml").read_text()
    # The output bag carries the track ids in Detection2D.id (both topics): one id per person
    # over the whole crossing once confirmed, the landmarks in results[1..5].
    ids_by_person = {"obama": set(), "biden": set()}
    for topic in ("/cam/faces/detections", "/cam/faces/identities"):
        arrays = read_arrays(tmp_path / "tracked", topic)
        assert len(arrays) == len(frames)
        for n, (frame, arr) in enumerate(zip(frames, arrays)):
            for det in arr.detections:
                assert [r.hypothesis.class_id for r in det.results[1:]] == \
                    list(LANDMARK_CLASS_IDS)
                person = min(frame.truth, key=lambda p: abs(
                    (frame.truth[p][0] + frame.truth[p][2]) / 2 - det.bbox.center.position.x))
                if n >= 2:  # confirmed from the third frame on (confirm_hits 3)
                    ids_by_person[person].add(det.id)
                else:
                    assert det.id == ""
    assert all(len(ids) == 1 and "" not in ids for ids in ids_by_person.values()), ids_by_person
    assert ids_by_person["obama"] != ids_by_person["biden"]
    alone_ids = {d.id for arr in read_arrays(tmp_path / "alone", "/cam/faces/detections")
                 for d in arr.detections}
    assert alone_ids == {""}  # --no-tracking: untracked


def read_arrays(bag, topic):
    from rosbags.rosbag2 import Reader

    store = rosbag_io.typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        return [store.deserialize_cdr(raw, c.msgtype)
                for c, _, raw in reader.messages(connections=conns)]


def summary(text):
    """(faces, {name: count}, unknown) from the bag command's printed summary."""
    lines = text.splitlines()
    faces = int(next(x for x in lines if x.startswith("faces: ")).split()[1])
    line = next(x for x in lines if x.startswith("identities: "))
    known, unknown = line[len("identities: "):].split("; unknown: ")
    names = {n: int(c) for n, c in (part.split(" x") for part in known.split(", "))}
    return faces, names, int(unknown)
