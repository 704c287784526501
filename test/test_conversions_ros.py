"""rclpy message conversions: Image/CompressedImage -> BGR, Faces <-> Detection2DArray."""
import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from face_perception.messages.face_fields import LANDMARK_CLASS_IDS, DetectionFieldError
from face_perception.ros import conversions as conv
from face_perception.types import Category, Face


def _header(sec=12, nanosec=345, frame_id="cam"):
    h = Header(frame_id=frame_id)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def _faces():
    lm = np.array([[30, 40], [60, 40], [45, 55], [35, 70], [55, 70]], np.float32)
    return [Face([20, 25, 70, 90], 0.98, lm), Face([100, 10, 140, 60], 0.7, None)]


def test_real_photo_through_image_message_is_unchanged(photos):
    img = cv2.imread(str(photos / "obama.jpg"))
    msg = conv.bgr_to_image(img, _header())
    assert (msg.height, msg.width, msg.encoding, msg.step) == (*img.shape[:2], "bgr8",
                                                                img.shape[1] * 3)
    np.testing.assert_array_equal(conv.image_to_bgr(msg, use_cv_bridge=False), img)


def test_rgb8_message_with_row_padding(photos):
    img = cv2.imread(str(photos / "biden.jpg"))[:50, :41]
    rows = np.ascontiguousarray(img[:, :, ::-1]).reshape(50, -1)
    padded = np.hstack([rows, np.zeros((50, 5), np.uint8)])
    msg = Image(height=50, width=41, encoding="rgb8", step=41 * 3 + 5)
    msg.data = padded.tobytes()
    np.testing.assert_array_equal(conv.image_to_bgr(msg, use_cv_bridge=False), img)


def test_unsupported_and_truncated_messages_raise_specific_errors():
    msg = Image(height=4, width=4, encoding="32FC1", step=16)
    msg.data = bytes(64)
    with pytest.raises(conv.UnsupportedEncodingError):
        conv.image_to_bgr(msg)
    msg = Image(height=4, width=4, encoding="bgr8", step=12)
    msg.data = bytes(20)
    with pytest.raises(conv.ImageMessageError, match="truncated"):
        conv.image_to_bgr(msg)


def test_compressed_png_message_decodes_exactly(photos):
    img = cv2.imread(str(photos / "obama3.jpg"))
    msg = conv.bgr_to_compressed_image(img, _header(), "png")
    np.testing.assert_array_equal(conv.compressed_to_bgr_msg(msg), img)


def test_faces_become_detections_with_header_box_score_and_landmarks():
    hdr = _header()
    arr = conv.faces_to_detection_array(_faces(), hdr)
    assert arr.header == hdr and len(arr.detections) == 2
    d0 = arr.detections[0]
    assert d0.header == hdr
    assert (d0.bbox.center.position.x, d0.bbox.center.position.y) == (45.0, 57.5)
    assert (d0.bbox.size_x, d0.bbox.size_y) == (50.0, 65.0)
    assert d0.results[0].hypothesis.class_id == "face"
    assert d0.results[0].hypothesis.score == pytest.approx(0.98)
    # results[1..5]: the landmarks, pixel position in the pose, score below any face score.
    marks = d0.results[1:]
    assert [r.hypothesis.class_id for r in marks] == list(LANDMARK_CLASS_IDS)
    assert [(r.pose.pose.position.x, r.pose.pose.position.y) for r in marks] == \
        [tuple(p) for p in _faces()[0].landmarks.tolist()]
    assert all(r.hypothesis.score == -1.0 and r.pose.pose.position.z == 0.0 for r in marks)
    assert len(arr.detections[1].results) == 1  # no landmarks, no landmark results
    assert [d.id for d in arr.detections] == ["", ""]  # not tracked
    back = conv.detection_array_to_faces(arr)
    np.testing.assert_allclose(back[0].box, _faces()[0].box)
    np.testing.assert_array_equal(back[0].landmarks, _faces()[0].landmarks)
    assert back[1].landmarks is None and back[1].score == pytest.approx(0.7)
    assert conv.detection_track_ids(arr) == [None, None]


def test_track_ids_round_trip_through_detection_id():
    arr = conv.faces_to_detection_array(_faces(), _header(), track_ids=["4", None])
    assert [d.id for d in arr.detections] == ["4", ""]
    assert conv.detection_track_ids(arr) == ["4", None]
    ids = conv.identities_to_detection_array(_faces(), [Category("obama", 0.9), None],
                                             _header(), track_ids=["4", "9"])
    assert conv.detection_track_ids(ids) == ["4", "9"]
    with pytest.raises(ValueError, match="2 faces but 1 track ids"):
        conv.faces_to_detection_array(_faces(), _header(), track_ids=["4"])


def best_scoring(det):
    """What a consumer that takes the best-scoring hypothesis reads (first of equals)."""
    return max(det.results, key=lambda r: r.hypothesis.score).hypothesis.class_id


def test_consumers_taking_results_0_or_the_best_score_get_the_face_or_identity():
    faces = [Face(f.box, 0.0, _faces()[0].landmarks) for f in _faces()]  # even a 0-score face
    for arr, want in ((conv.faces_to_detection_array(faces, _header()), ["face", "face"]),
                      (conv.identities_to_detection_array(
                          faces, [Category("obama", 0.91), None], _header()),
                       ["obama", "unknown"])):
        assert [d.results[0].hypothesis.class_id for d in arr.detections] == want
        assert [best_scoring(d) for d in arr.detections] == want
        # Strictly: the last of equals, or a threshold at 0, never picks a landmark either.
        for d in arr.detections:
            top = d.results[0].hypothesis.score
            assert all(r.hypothesis.score < top for r in d.results[1:])
            assert [r.hypothesis.class_id for r in d.results if r.hypothesis.score >= 0.0] == \
                [d.results[0].hypothesis.class_id]


def test_identities_use_name_or_unknown_and_similarity():
    cats = [Category("obama", 0.91), None]
    arr = conv.identities_to_detection_array(_faces(), cats, _header())
    hyps = [d.results[0].hypothesis for d in arr.detections]
    assert [(h.class_id, round(h.score, 2)) for h in hyps] == [("obama", 0.91), ("unknown", 0.0)]
    np.testing.assert_array_equal(conv.detection_array_to_faces(arr)[0].landmarks,
                                  _faces()[0].landmarks)
    with pytest.raises(ValueError, match="2 faces but 1"):
        conv.identities_to_detection_array(_faces(), cats[:1], _header())


def test_detections_from_another_detector_keep_their_ids_and_have_no_landmarks():
    arr = Detection2DArray()
    for det_id, cls in (("track-3", "person"), ("", "face")):
        det = Detection2D(id=det_id)
        det.bbox.center.position.x, det.bbox.center.position.y = 50.0, 60.0
        det.bbox.size_x, det.bbox.size_y = 20.0, 30.0
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = cls, 0.8
        det.results.append(hyp)
        arr.detections.append(det)
    arr.detections[1].results.clear()  # no hypothesis at all: score 1
    faces = conv.detection_array_to_faces(arr)
    np.testing.assert_allclose(faces[0].box, [40, 45, 60, 75])
    assert [f.landmarks for f in faces] == [None, None]
    assert [f.score for f in faces] == [pytest.approx(0.8), 1.0]
    assert conv.detection_track_ids(arr) == ["track-3", None]


def test_old_style_landmark_id_is_read_as_landmarks_not_as_a_track_id():
    det = Detection2D(id='{"landmarks":[[30,40],[60,40],[45,55],[35,70],[55,70]]}')
    det.bbox.size_x, det.bbox.size_y = 20.0, 30.0
    arr = Detection2DArray(detections=[det])
    np.testing.assert_array_equal(conv.detection_array_to_faces(arr)[0].landmarks,
                                  _faces()[0].landmarks)
    assert conv.detection_track_ids(arr) == [None]


def test_incomplete_landmark_results_are_a_bad_detection():
    arr = conv.faces_to_detection_array(_faces()[:1], _header())
    del arr.detections[0].results[3]
    with pytest.raises(DetectionFieldError, match="landmark/nose"):
        conv.detection_array_to_faces(arr)


def test_label_info_lists_unknown_then_gallery_names():
    msg = conv.label_info(["biden", "obama"], _header(), 0.5)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [
        (0, "unknown"), (1, "biden"), (2, "obama")]
    assert msg.threshold == pytest.approx(0.5)
    assert conv.label_version(msg) == 1


def test_label_numbers_stay_put_when_identities_come_and_go():
    numbering = conv.LabelNumbering()

    def pairs(names):
        msg = conv.label_info(names, _header(), 0.5, numbering=numbering)
        return [(c.class_id, c.class_name) for c in msg.class_map], conv.label_version(msg)

    assert pairs(["biden", "obama"]) == ([(0, "unknown"), (1, "biden"), (2, "obama")], 1)
    assert pairs(["biden", "obama"])[1] == 1  # same map, same version
    # biden removed, carol added: obama keeps 2, carol gets 3 (1 is not reused).
    assert pairs(["obama", "carol"]) == ([(0, "unknown"), (2, "obama"), (3, "carol")], 2)
    # biden enrolled again: his old number; a reordered gallery changes no number.
    assert pairs(["carol", "biden", "obama"]) == (
        [(0, "unknown"), (3, "carol"), (1, "biden"), (2, "obama")], 3)
    # The version travels in header.frame_id; the stamp is the caller's.
    msg = conv.label_info(["obama"], _header(), 0.5, numbering=numbering)
    assert msg.header.frame_id == "label_version:4"
    assert msg.header.stamp == _header().stamp
