"""REP-155 conversions without ROS: ids, normalised ROI and landmarks, crops, face bookkeeping."""
from types import SimpleNamespace as NS

import numpy as np
import pytest

from face_perception.alignment import ARCFACE_TEMPLATE_112, estimate_similarity
from face_perception.imageio import read_image_bgr
from face_perception.messages import hri
from face_perception.messages.face_fields import (
    DetectionFieldError,
    track_id_and_landmarks,
)


def test_face_ids_are_ros_name_tokens_stable_per_track_and_distinct_per_camera():
    from rclpy.validate_full_topic_name import validate_full_topic_name

    ids = hri.FaceIds("k3q9xz")
    tracks = [("cam", "7"), ("cam", "12"), ("cam", "a-b"), ("cam", "é"), ("left", "7"),
              ("right", "7")]
    got = [ids.face_id(src, t) for src, t in tracks]
    assert got == ["fk3q9xz1", "fk3q9xz2", "fk3q9xz3", "fk3q9xz4", "fk3q9xz5", "fk3q9xz6"]
    assert [ids.face_id(src, t) for src, t in tracks] == got  # a track keeps its id
    assert [ids.track_of(f) for f in got] == tracks and ids.track_of("f7") is None
    for fid in got:  # raises on an invalid name
        validate_full_topic_name(f"/humans/faces/{fid}/roi")
    with pytest.raises(ValueError, match="empty track id"):
        ids.face_id("cam", "")


def test_face_ids_never_repeat_across_starts_or_after_a_track_expired():
    # Two starts (or two bridges) see the same camera and track ids: other sessions, other ids.
    a, b = hri.FaceIds("aaaaaa"), hri.FaceIds("aaaaab")
    assert a.face_id("cam", "1") == "faaaaaa1" and b.face_id("cam", "1") == "faaaaab1"
    # The counter is base 36 after a fixed-length token: no id is a prefix-split of another.
    for _ in range(40):
        last = a.face_id("cam", str(len(a) + 1))
    assert last == "faaaaaa" + "15"  # 41 in base 36
    sessions = {hri.FaceIds().session for _ in range(100)}
    assert len(sessions) == 100 and all(
        len(s) == hri.SESSION_LENGTH and set(s) <= set(hri.ID_ALPHABET) for s in sessions)
    # A track not seen for longer than the timeout is forgotten: a tracker reusing its id
    # later gets a new face id.
    ids = hri.FaceIds("zzzzzz")
    first = ids.face_id("cam", "3", now=10.0)
    assert ids.face_id("cam", "3", now=10.9) == first and ids.expire(11.5, 1.0) == []
    assert ids.expire(12.0, 1.0) == [first] and len(ids) == 0
    assert ids.face_id("cam", "3", now=12.0) not in (first,)
    with pytest.raises(ValueError, match="session token"):
        hri.FaceIds("UPPER1")


def test_person_ids_are_name_tokens_stable_across_runs():
    from rclpy.validate_full_topic_name import validate_full_topic_name

    assert hri.person_id("obama") == "pobama" and hri.person_id("ada lovelace") == \
        "pada_20lovelace"
    assert hri.person_id("a-b") != hri.person_id("a_b")
    validate_full_topic_name(f"/humans/persons/{hri.person_id('Zoë O_Neil')}/name")
    with pytest.raises(ValueError, match="empty"):
        hri.person_id("")


def test_roi_is_normalised_and_clipped_to_the_image():
    assert hri.normalized_roi([64, 48, 320, 240], 640, 480) == pytest.approx(
        (0.1, 0.1, 0.5, 0.5))
    assert hri.normalized_roi([-10, 400, 700, 500], 640, 480) == pytest.approx(
        (0.0, 400 / 480, 1.0, 1.0))
    with pytest.raises(ValueError, match="image size must be positive"):
        hri.normalized_roi([0, 0, 1, 1], 0, 480)


def test_landmarks_go_to_the_persons_eyes_nose_and_mouth_corners_the_rest_absent(
        photos, core_detector):
    img = read_image_bgr(photos / "obama.jpg")
    (face,) = core_detector.detect(img)
    h, w = img.shape[:2]
    out = hri.facial_landmarks(face.landmarks, w, h)
    assert out.shape == (70, 3)
    # The eye on the image left is the person's right eye: RIGHT_PUPIL (68) has the smaller x.
    assert out[68, 0] < out[69, 0]
    np.testing.assert_allclose(out[[68, 69, 30, 48, 54], :2],
                               face.landmarks / [w, h], atol=1e-6)
    assert (out[[68, 69, 30, 48, 54], 2] == 1).all()
    absent = np.delete(out, [68, 69, 30, 48, 54], axis=0)
    assert absent.shape == (65, 3) and not absent.any()


def test_cropped_face_is_scaled_centred_and_zero_padded(photos, core_detector):
    img = read_image_bgr(photos / "obama.jpg")
    (face,) = core_detector.detect(img)
    x1, y1, x2, y2 = face.box
    wide = [x1 - (y2 - y1) / 2, y1, x2 + (y2 - y1) / 2, y2]  # wider than high
    crop = hri.cropped_face(img, wide, 128, 128)
    assert crop.shape == (128, 128, 3) and crop.dtype == np.uint8
    rows = np.flatnonzero(crop.any(axis=(1, 2)))
    assert rows[0] > 0 and rows[-1] < 127  # black bands above and below
    assert abs(rows[0] - (127 - rows[-1])) <= 1  # centred
    assert crop[:, 0].any() and crop[:, 127].any()  # full width
    assert not hri.cropped_face(img, [-50, -50, -10, -10]).any()


def test_aligned_face_has_level_eyes_at_the_scaled_template(photos, core_detector):
    img = read_image_bgr(photos / "obama2.jpg")
    (face,) = core_detector.detect(img)
    chip = hri.aligned_face(img, face.landmarks, 128, 128)
    assert chip.shape == (128, 128, 3) and chip.std() > 20  # a real face, not a blank chip
    m = estimate_similarity(face.landmarks, ARCFACE_TEMPLATE_112 * 128 / 112)
    eyes = face.landmarks[:2] @ m[:, :2].T + m[:, 2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 2.0  # level within 2 of 128 pixels


def det(det_id="", results=()):
    return NS(id=det_id, results=[NS(hypothesis=NS(class_id=c, score=s),
                                     pose=NS(pose=NS(position=NS(x=x, y=y))))
                                  for c, s, x, y in results])


def test_track_id_and_landmarks_from_either_carrier():
    pts = np.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], dtype=np.float32)
    legacy = '{"landmarks":' + str(pts.tolist()).replace(' ', '') + '}'  # before track ids
    assert track_id_and_landmarks(det(legacy))[0] is None
    np.testing.assert_allclose(track_id_and_landmarks(det(legacy))[1], pts)
    assert track_id_and_landmarks(det("")) == (None, None)
    assert track_id_and_landmarks(det("7", [("obama", 0.95, 0, 0)])) == ("7", None)
    names = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    carried = [("face", 0.9, 0, 0)] + [(f"landmark/{n}", -1.0, x, y)
                                       for n, (x, y) in zip(names, pts)]
    track, got = track_id_and_landmarks(det("7", carried))
    assert track == "7"
    np.testing.assert_allclose(got, pts)
    with pytest.raises(DetectionFieldError, match="incomplete"):
        track_id_and_landmarks(det("7", carried[:3]))


def test_tracked_faces_report_appearances_departures_and_person_changes():
    faces = hri.TrackedFaces()
    c = faces.update([("f1", "pobama", 0.9), ("f2", None, 0.0)])
    assert (c.appeared, c.gone, c.matches, c.unmatched) == (
        ["f1", "f2"], [], [("f1", "pobama", 0.9)], [])
    c = faces.update([("f1", "pbiden", 0.8), ("f2", None, 0.0)])
    assert (c.appeared, c.gone, c.unmatched, c.matches) == (
        [], [], [("f1", "pobama")], [("f1", "pbiden", 0.8)])
    c = faces.update([("f2", "pobama", 0.95)])
    assert (c.appeared, c.gone, c.unmatched) == ([], ["f1"], [("f1", "pbiden")])
    c = faces.update([])
    assert (c.gone, c.unmatched, faces.faces) == (["f2"], [("f2", "pobama")], [])
    with pytest.raises(ValueError, match="repeat"):
        faces.update([("f3", None, 0.0), ("f3", None, 0.0)])
    assert hri.match_confidence(0.93) == pytest.approx(0.93)
    assert hri.match_confidence(-0.2) == hri.MIN_MATCH_CONFIDENCE
    assert hri.match_confidence(1.2) == 1.0


def test_a_frame_removes_only_its_own_cameras_faces():
    faces = hri.TrackedFaces()
    faces.update([("fa", None, 0.0)], source="left", now=1.0)
    c = faces.update([("fb", "pobama", 0.9)], source="right", now=1.0)
    assert (c.appeared, c.gone, faces.faces) == (["fb"], [], ["fa", "fb"])
    c = faces.update([], source="left", now=1.1)
    assert (c.gone, faces.faces) == (["fa"], ["fb"])
    with pytest.raises(ValueError, match="another source"):
        faces.update([("fb", None, 0.0)], source="left")


def test_faces_without_upstream_expire_after_the_timeout_and_lose_their_match():
    faces = hri.TrackedFaces()
    faces.update([("fa", "pobama", 0.9), ("fb", None, 0.0)], source="cam", now=10.0)
    faces.update([("fc", None, 0.0)], source="other", now=10.4)
    c = faces.expire(10.5, 0.5)  # exactly the timeout: still there
    assert (c.gone, faces.faces) == ([], ["fa", "fb", "fc"])
    c = faces.expire(10.6, 0.5)
    assert (c.gone, c.unmatched, faces.faces) == (["fa", "fb"], [("fa", "pobama")], ["fc"])
    c = faces.expire(11.0, 0.5)
    assert (c.gone, c.unmatched, faces.faces) == (["fc"], [], [])
