"""`face-perception bag` and rosbag_io: real bags (.mcap, .db3) written from the real photos,
processed with the real detector and recognizer, read back with rosbags. No ROS runtime."""
import filecmp
from pathlib import Path

import cv2
import numpy as np
import pytest

from face_perception.bag import rosbag_io
from face_perception.bag.processing import output_topics
from face_perception.bag.rosbag_io import BagError
from face_perception.cli import main
from face_perception.messages.face_fields import LANDMARK_CLASS_IDS
from face_perception.messages.stamps import stamp_to_ns

REPO = Path(__file__).resolve().parents[1]
PHOTOS = ("obama2.jpg", "obama3.jpg", "biden.jpg", "obama.jpg")
T0 = 1_700_000_000 * 10**9


def fit(img, size=(640, 480)):
    scale = min(size[0] / img.shape[1], size[1] / img.shape[0])
    return cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def write_bag_with_bad_frame(path: Path, photos: Path, storage="mcap", compressed=None):
    """Real photos at 0.1 s intervals on /camera/image_raw, plus one truncated frame."""
    store = rosbag_io.typestore()
    writer = rosbag_io.open_writer(path, storage)
    msgtype = rosbag_io.COMPRESSED if compressed else rosbag_io.IMAGE
    conn = writer.add_connection("/camera/image_raw", msgtype, typestore=store)
    stamps = []
    for i, name in enumerate(PHOTOS):
        stamp = T0 + i * 10**8
        msg = rosbag_io.image_message(fit(cv2.imread(str(photos / name))),
                                      rosbag_io.header(stamp, "camera"), compressed)
        writer.write(conn, stamp, store.serialize_cdr(msg, msgtype))
        stamps.append(stamp)
    if not compressed:
        bad = rosbag_io.image_message(np.zeros((48, 64, 3), np.uint8),
                                      rosbag_io.header(T0 + 10**9, "camera"))
        bad.data = bad.data[:100]  # truncated payload
        writer.write(conn, T0 + 10**9, store.serialize_cdr(bad, msgtype))
    writer.close()
    return stamps


def read_topic(bag: Path, topic: str):
    from rosbags.rosbag2 import Reader
    store = rosbag_io.typestore()
    with Reader(bag) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:  # rosbags reads every topic for an empty filter
            return []
        return [(t, store.deserialize_cdr(raw, c.msgtype))
                for c, t, raw in reader.messages(connections=conns)]


@pytest.fixture(scope="module")
def gallery(enroll, tmp_path_factory):
    return enroll().save(tmp_path_factory.mktemp("gallery") / "people.json")


def test_bag_command_writes_detections_identities_and_annotations_with_same_stamps(
        photos, gallery, tmp_path, capsys):
    stamps = write_bag_with_bad_frame(tmp_path / "in", photos)
    out = tmp_path / "out"
    code = main(["bag", str(tmp_path / "in"), "--image-topic", "/camera/image_raw",
                 "--output", str(out), "--gallery", str(gallery), "--annotated",
                 # Four different photos, one frame each: judged per frame (a track needs
                 # several frames of evidence; test_tracking_bag.py covers tracking).
                 "--no-tracking"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    assert "frames: 5 (1 unreadable)" in printed.out and "faces: 4" in printed.out
    assert "obama x3" in printed.out and "biden x1" in printed.out
    assert "ms/frame:" in printed.out
    assert "truncated" in printed.err

    topics = output_topics("/camera/image_raw")
    assert topics["detections"] == "/camera/faces/detections"
    images = read_topic(out, "/camera/image_raw")
    dets = read_topic(out, topics["detections"])
    ids = read_topic(out, topics["identities"])
    annotated = read_topic(out, topics["identities_image"])
    # Every original image is copied, byte for byte, at its log time.
    assert [t for t, _ in images] == stamps + [T0 + 10**9]
    assert [t for t, _ in dets] == stamps and [t for t, _ in ids] == stamps
    assert [t for t, _ in annotated] == stamps
    for (t, img), (_, det), (_, ident), name in zip(images, dets, ids, PHOTOS):
        assert stamp_to_ns(det.header.stamp) == t == stamp_to_ns(img.header.stamp)
        assert det.header.frame_id == "camera"
        assert len(det.detections) == 1 and len(ident.detections) == 1
        assert det.detections[0].results[0].hypothesis.class_id == "face"
        # --no-tracking: no track ids; the landmarks follow the face hypothesis.
        assert det.detections[0].id == "" == ident.detections[0].id
        for d in (det.detections[0], ident.detections[0]):
            assert [r.hypothesis.class_id for r in d.results[1:]] == list(LANDMARK_CLASS_IDS)
        who = ident.detections[0].results[0].hypothesis
        assert who.class_id == ("biden" if name.startswith("biden") else "obama")
        assert 0.5 < who.score <= 1.0
        assert ident.detections[0].bbox.size_x == det.detections[0].bbox.size_x
    _, first = annotated[0]
    assert (first.height, first.width, first.encoding) == (images[0][1].height,
                                                           images[0][1].width, "bgr8")
    original = rosbag_io.decode_image(rosbag_io.ImageRecord(0, images[0][1], rosbag_io.IMAGE,
                                                            b"", None))
    drawn = first.data.reshape(first.height, first.width, 3)
    assert (drawn != original).any(axis=2).mean() > 0.001  # boxes and names were drawn


def test_bag_command_reads_db3_and_compressed_and_keeps_storage(photos, tmp_path, capsys):
    stamps = write_bag_with_bad_frame(tmp_path / "in_db3", photos, storage="sqlite3",
                                      compressed="jpeg")
    code = main(["bag", str(tmp_path / "in_db3"), "--image-topic", "/camera/image_raw",
                 "--output", str(tmp_path / "out_db3"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert list((tmp_path / "out_db3").glob("*.db3"))
    dets = read_topic(tmp_path / "out_db3", "/camera/faces/detections")
    assert [t for t, _ in dets] == stamps
    assert [len(d.detections) for _, d in dets] == [1, 1, 1, 1]
    assert not read_topic(tmp_path / "out_db3", "/camera/faces/identities")
    # A single storage file is accepted as input too.
    db3_file = next((tmp_path / "in_db3").glob("*.db3"))
    assert rosbag_io.image_topic_info(db3_file, "/camera/image_raw") == (
        rosbag_io.COMPRESSED, 4)


def test_bag_command_errors_are_one_clear_line(photos, tmp_path, capsys):
    write_bag_with_bad_frame(tmp_path / "in", photos)
    code = main(["bag", str(tmp_path / "in"), "--image-topic", "/nope", "--output",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "topic '/nope' not in bag" in err and "/camera/image_raw" in err
    assert not (tmp_path / "out").exists()
    (tmp_path / "exists").mkdir()
    code = main(["bag", str(tmp_path / "in"), "--image-topic", "/camera/image_raw",
                 "--output", str(tmp_path / "exists")])
    assert code == 2 and "exists already" in capsys.readouterr().err
    code = main(["bag", str(tmp_path / "missing"), "--image-topic", "/x", "--output",
                 str(tmp_path / "o2")])
    assert code == 2 and "bag not found" in capsys.readouterr().err


def test_image_topic_of_wrong_type_is_refused(tmp_path):
    store = rosbag_io.typestore()
    writer = rosbag_io.open_writer(tmp_path / "dets", "mcap")
    conn = writer.add_connection("/faces", rosbag_io.DETECTIONS, typestore=store)
    msg = rosbag_io.detection_array(rosbag_io.header(5, "cam"), [])
    writer.write(conn, 5, store.serialize_cdr(msg, rosbag_io.DETECTIONS))
    writer.close()
    with pytest.raises(BagError, match="holds vision_msgs/msg/Detection2DArray"):
        rosbag_io.image_topic_info(tmp_path / "dets", "/faces")


def test_shipped_vision_msgs_definitions_match_interfaces_copy():
    shipped = REPO / "face_perception/bag/msg/vision_msgs"
    source = REPO / "interfaces/vision_msgs/msg"
    names = sorted(p.name for p in source.glob("*.msg"))
    assert names and names == sorted(p.name for p in shipped.glob("*.msg"))
    match, mismatch, errors = filecmp.cmpfiles(source, shipped, names, shallow=False)
    assert not mismatch and not errors, (mismatch, errors)


def test_rosbags_detection_type_hash_matches_upstream_vision_msgs():
    # The same RIHS01 as the generated rclpy type (test_vision_msgs_type_hash): bags written
    # here are readable by a real ROS 2 install.
    assert rosbag_io.typestore().hash_rihs01(rosbag_io.DETECTIONS) == \
        "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968"
