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


def test_param_specs_refuse_the_silently_accepted_values_of_issue_22():
    from face_perception.ros.params import DETECTOR, RECOGNIZER

    det = {s.name: s for s in DETECTOR}
    rec = {s.name: s for s in RECOGNIZER}
    assert det["scales"].check([]) == "scales needs at least 1 item(s), got []"
    assert rec["unknown_label"].check("") == "unknown_label must not be empty or blank, got ''"
    assert "must not be empty" in rec["unknown_label"].check("  ")
    assert rec["margin"].check(-0.5) == "margin must be -1.0 or in [0.0, 1.0], got -0.5"
    assert rec["margin"].check(-1.0) is None and rec["margin"].check(0.2) is None
    # rclpy enforces the descriptor range itself: it must let the sentinel through
    (span,) = rec["margin"].descriptor().floating_point_range
    assert (span.from_value, span.to_value) == (-1.0, 1.0)
    assert rec["margin"].descriptor().additional_constraints == "-1.0 or in [0.0, 1.0]"
    assert det["backend"].check("onnx-int8") is None


def test_gallery_path_must_name_an_existing_gallery_unless_one_is_to_be_created(tmp_path):
    from face_perception.gallery import Gallery
    from face_perception.ros.params import gallery_file_problem

    assert gallery_file_problem("", False) is None  # no gallery: a choice, not a typo
    reason = gallery_file_problem("/nonexistent", False)
    assert "gallery_path '/nonexistent': no gallery file /nonexistent.json" in reason
    assert "create_gallery: true" in reason
    assert gallery_file_problem("/nonexistent", True) is None
    Gallery("some_model", 4).save(tmp_path / "people.json")
    assert gallery_file_problem(str(tmp_path / "people.json"), False) is None
    assert gallery_file_problem(str(tmp_path / "people.npz"), False) is None


def test_launch_plan_accepts_exactly_the_backends_and_devices_the_nodes_accept():
    from face_perception.devices import BACKENDS
    from face_perception.ros.launch_plan import plan
    from face_perception.ros.params import DETECTOR, DEVICES, RECOGNIZER

    for table in (DETECTOR, RECOGNIZER):
        specs = {s.name: s for s in table}
        assert tuple(specs["backend"].choices) == BACKENDS
        assert tuple(specs["device"].choices) == DEVICES
    for backend in BACKENDS:
        det, rec = plan({"backend": backend})
        assert det.parameters[-1] == rec.parameters[-1] == {"backend": backend}
    for device in DEVICES:
        assert plan({"device": device})[0].parameters[-1] == {"device": device}
    with pytest.raises(ValueError, match="backend must be one of"):
        plan({"backend": "tensorrt"})


def test_devices_of_reports_the_cpu_when_cuda_fell_back(core_detector):
    import onnxruntime

    from face_perception.detection import Detector
    from face_perception.ros.model_devices import devices_of

    assert devices_of(core_detector) == "cpu"
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():  # a GPU machine
        assert devices_of(Detector(device="cuda")) == "cuda"
        return
    with pytest.warns(RuntimeWarning, match="CUDA"):
        asked_for_cuda = Detector(device="cuda")
    assert asked_for_cuda.device == "cuda"  # the request; the session runs on the CPU
    assert devices_of(asked_for_cuda) == "cpu"


def test_build_pipeline_takes_the_nodes_tracking_and_identity_settings():
    from face_perception.pipeline import FacePipeline, build_pipeline
    from face_perception.ros.params import DETECTOR, RECOGNIZER

    recognizer_values = {s.name: s.default for s in RECOGNIZER}
    recognizer_values.update(identity_min_observations=3, identity_switch_after=4,
                             identity_embed_period=0.5, upstream_max_age=7.0,
                             track_max_age=3.0)
    pipeline = build_pipeline(recognizer_values)
    config = pipeline.tracking.identity_config
    assert (config.min_observations, config.switch_after, config.embed_period) == (3, 4, 0.5)
    assert pipeline.tracking.upstream_max_age == 7.0
    assert pipeline.tracker.config.max_age == 3.0
    # The detector node's table has no identity settings: the pipeline's own defaults.
    detector_pipeline = build_pipeline({s.name: s.default for s in DETECTOR})
    assert detector_pipeline.tracking.identity_config == FacePipeline().tracking.identity_config
    assert build_pipeline({**recognizer_values, "tracking": False}).tracker is None
