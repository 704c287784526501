"""rclpy message conversions: Image/CompressedImage -> BGR, Faces <-> Detection2DArray."""
import cv2
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2D, Detection2DArray

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
    assert len(d0.results) == 1
    assert d0.results[0].hypothesis.class_id == "face"
    assert d0.results[0].hypothesis.score == pytest.approx(0.98)
    assert arr.detections[1].id == ""
    back = conv.detection_array_to_faces(arr)
    np.testing.assert_allclose(back[0].box, _faces()[0].box)
    np.testing.assert_allclose(back[0].landmarks, _faces()[0].landmarks, atol=0.05)
    assert back[1].landmarks is None and back[1].score == pytest.approx(0.7)


def test_identities_use_name_or_unknown_and_similarity():
    cats = [Category("obama", 0.91), None]
    arr = conv.identities_to_detection_array(_faces(), cats, _header())
    hyps = [d.results[0].hypothesis for d in arr.detections]
    assert [(h.class_id, round(h.score, 2)) for h in hyps] == [("obama", 0.91), ("unknown", 0.0)]
    with pytest.raises(ValueError, match="2 faces but 1"):
        conv.identities_to_detection_array(_faces(), cats[:1], _header())


def test_detections_from_another_detector_have_no_landmarks():
    det = Detection2D(id="track-3")
    det.bbox.center.position.x, det.bbox.center.position.y = 50.0, 60.0
    det.bbox.size_x, det.bbox.size_y = 20.0, 30.0
    (face,) = conv.detection_array_to_faces(Detection2DArray(detections=[det]))
    np.testing.assert_allclose(face.box, [40, 45, 60, 75])
    assert face.landmarks is None and face.score == 1.0


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
