"""Node plumbing without DDS: parameter specs, the newest-frame mailbox, stamp pairing."""
import threading

import pytest

from face_perception.ros.latest_frame import LatestFrame
from face_perception.ros.pairing import StampPairer


def test_latest_frame_keeps_only_the_newest_and_counts_replaced():
    slot = LatestFrame()
    assert slot.put(1) == 0
    assert slot.put(2) == 1 and slot.put(3) == 1
    assert slot.take(0) == 3
    assert slot.take(0.01) is None


def test_latest_frame_wakes_a_waiting_worker_and_close_releases_it():
    slot = LatestFrame()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take()))  # waits with no timeout
    worker.start()
    slot.put("frame")
    worker.join(60)
    assert not worker.is_alive() and got == ["frame"]
    worker = threading.Thread(target=lambda: got.append(slot.take()))
    worker.start()
    slot.close()  # the only thing that can end this wait
    worker.join(60)
    assert not worker.is_alive() and got[-1] is None


def test_pairer_matches_either_order_by_stamp_and_frame():
    pairer = StampPairer(3)
    assert pairer.add_image((1, "cam"), "img1") is None
    assert pairer.add_detections((1, "other_cam"), "detX") is None  # same stamp, other frame
    assert pairer.add_detections((1, "cam"), "det1") == ("img1", "det1")
    assert pairer.add_detections((2, "cam"), "det2") is None
    assert pairer.add_image((2, "cam"), "img2") == ("img2", "det2")
    assert pairer.matched == 2 and pairer.pending() == (0, 1)


def test_pairer_is_bounded_and_counts_what_it_drops():
    pairer = StampPairer(2)
    for i in range(10):
        pairer.add_image((i, "cam"), i)
    assert pairer.pending() == (2, 0) and pairer.unmatched_images == 8
    assert pairer.add_detections((9, "cam"), "d") == (9, "d")
    assert pairer.add_detections((0, "cam"), "late") is None  # its image was dropped
    with pytest.raises(ValueError, match="capacity"):
        StampPairer(0)


def test_param_specs_explain_every_rejection():
    from face_perception.ros.params import DETECTOR, RECOGNIZER

    det = {s.name: s for s in DETECTOR}
    rec = {s.name: s for s in RECOGNIZER}
    assert det["score_threshold"].check(0.7) is None
    assert det["score_threshold"].check(1) is None  # ints are fine for doubles
    assert "in [0.0, 1.0]" in det["score_threshold"].check(1.2)
    assert "must be float" in det["score_threshold"].check("high")
    assert "one of ['onnx', 'onnx-int8', 'torch']" in det["backend"].check("tensorrt")
    assert "must be int" in det["max_faces"].check(True)
    assert "finite" in det["scales"].check([1.0, float("nan")])
    assert "in [0.1, 4.0]" in det["scales"].check([0.05])
    assert det["scales"].check([0.5, 1.0, 2.0]) is None
    assert rec["threshold"].check(-1.0) is None
    for spec in (*DETECTOR, *RECOGNIZER):
        assert spec.check(spec.default) is None, spec.name
        assert spec.description.endswith("."), spec.name
        desc = spec.descriptor()
        assert desc.description and desc.name == spec.name
