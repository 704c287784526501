"""The one thread policy as the detector's sessions see it: thread counts resolved in one place,
idle onnxruntime pool threads sleeping unless the user turns spinning on."""
from __future__ import annotations

import pytest

from face_perception.detection import Detector
from face_perception.onnx.session import session_options
from face_perception.threads import ORT_SPIN_ENV, onnxruntime_spin, usable_cores


def _spin_entry(opts) -> str:
    return opts.get_session_config_entry("session.intra_op.allow_spinning")


def test_sessions_do_not_spin_and_use_every_usable_core_by_default(monkeypatch):
    monkeypatch.delenv(ORT_SPIN_ENV, raising=False)
    opts = session_options()
    assert opts.intra_op_num_threads == usable_cores()
    assert opts.inter_op_num_threads == 1
    assert _spin_entry(opts) == "0"
    assert session_options(1).intra_op_num_threads == 1


def test_spinning_is_the_users_choice_by_environment(monkeypatch):
    monkeypatch.setenv(ORT_SPIN_ENV, "1")
    assert onnxruntime_spin() and _spin_entry(session_options(2)) == "1"
    assert _spin_entry(session_options(2, spin=False)) == "0"
    monkeypatch.setenv(ORT_SPIN_ENV, "fast")
    with pytest.raises(ValueError, match="FACE_PERCEPTION_ORT_SPIN.*'fast'"):
        session_options(2)


def test_negative_thread_count_is_refused_with_its_value():
    with pytest.raises(ValueError, match="-2"):
        session_options(-2)


@pytest.mark.parametrize("backbone", ["mnet", "yunet"])
def test_detector_sessions_take_the_thread_count_given(backbone, monkeypatch):
    monkeypatch.delenv(ORT_SPIN_ENV, raising=False)
    det = Detector(backbone=backbone, num_threads=1)
    opts = det._run.session.get_session_options()
    assert opts.intra_op_num_threads == 1
    assert _spin_entry(opts) == "0"


def test_torch_detector_sets_torch_threads():
    import torch

    before = torch.get_num_threads()
    try:
        Detector(backbone="yunet", backend="torch", num_threads=1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
