"""int8 graphs on the real photos: the embedder's passes its guard, the detector's is refused.

Both facts are measured here (onnxruntime static QDQ, calibrated on the shipped photos):
dlib ResNet int8 keeps cosine >= 0.999 to fp32 and every pair decision; RetinaFace mnet int8
keeps the same faces but moves landmarks by several pixels on the large faces of the photos.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from face_perception.onnx.quantization import (
    RECORD_FILE,
    QuantizationError,
    QuantizationRefused,
    calibration_images,
    cosine_rows,
)
from face_perception.recognition.int8 import MIN_COSINE, aligned_chips, guard_embeddings


@pytest.fixture(scope="module")
def int8_embedder():
    from face_perception.recognition import Embedder

    return Embedder("dlib_resnet", backend="onnx-int8")


@pytest.fixture(scope="module")
def chips(photos, dlib_embedder, core_detector):
    return aligned_chips(dlib_embedder, calibration_images(photos), core_detector)


def test_int8_embedder_matches_fp32_on_every_real_face(int8_embedder, dlib_embedder, chips):
    assert int8_embedder.onnx_path.name.endswith(".int8.onnx")
    fp32 = dlib_embedder.embed_chips(chips)
    int8 = int8_embedder.embed_chips(chips)
    assert len(chips) >= 12  # every photo's face and its mirror image
    assert cosine_rows(fp32, int8).min() >= MIN_COSINE
    threshold = float(dlib_embedder.meta.threshold)
    same32 = fp32 @ fp32.T > threshold
    same8 = int8 @ int8.T > threshold
    assert (same32 == same8).all()
    # Obama's photos match each other and not Biden's, with either graph.
    pairs = same8[np.triu_indices(len(chips), 1)]
    assert pairs.any() and not pairs.all()


def test_int8_embedder_guard_record_holds_the_figures(int8_embedder):
    record = json.loads(int8_embedder.onnx_path.with_suffix(".guard.json").read_text())
    assert record["guard"]["min_cosine"] >= MIN_COSINE
    assert record["guard"]["decision_changes"] == 0
    assert record["guard"]["faces"] >= 12


def test_embedder_guard_refuses_embeddings_of_other_faces(dlib_embedder, chips):
    fp32 = dlib_embedder.embed_raw(chips)
    # Each face's embedding replaced by another face's: the guard must say so with the figures.
    with pytest.raises(QuantizationRefused, match=r"lowest cosine to fp32 is 0\.\d+ .*pair "
                                                  r"decisions change"):
        guard_embeddings(fp32, np.roll(fp32, 2, axis=0), float(dlib_embedder.meta.threshold))


def test_quantize_records_the_int8_graph_in_the_model_folder(tmp_path, dlib_embedder, capsys):
    from face_perception.cli import main
    from face_perception.recognition import Embedder

    folder = tmp_path / "dlib"
    shutil.copytree(dlib_embedder.folder, folder)
    assert main(["quantize", "embedder", "--model", str(folder)]) == 0
    assert "decision_changes 0" in capsys.readouterr().out
    record = json.loads((folder / RECORD_FILE).read_text())
    assert record["guard"]["min_cosine"] >= MIN_COSINE
    assert Embedder(str(folder), backend="onnx-int8").onnx_path == folder / "int8.onnx"

    # A record made from another fp32 graph is not used (the cached int8 graph is).
    record["fp32_sha256"] = "0" * 64
    (folder / RECORD_FILE).write_text(json.dumps(record))
    assert Embedder(str(folder), backend="onnx-int8").onnx_path != folder / "int8.onnx"

    # A damaged recorded graph is an error naming the file, not a silent fallback.
    from face_perception.files import sha256_file

    record["fp32_sha256"] = sha256_file(folder / "backbone.onnx")
    (folder / RECORD_FILE).write_text(json.dumps(record))
    (folder / "int8.onnx").write_bytes(b"not a model")
    with pytest.raises(QuantizationError, match="int8.onnx: missing or checksum differs"):
        Embedder(str(folder), backend="onnx-int8")


def test_int8_detector_is_refused_with_the_figures_on_the_real_photos():
    from face_perception.detection import Detector

    with pytest.raises(QuantizationRefused) as err:
        Detector(backend="onnx-int8")
    text = str(err.value)
    assert "7 images with 7 faces, 0 missing and 0 extra faces" in text
    worst = float(text.split("worst landmark ")[1].split(" px")[0])
    assert worst > 2.0  # measured: 11.9 px at max_size 1280, 10.3 px at 640


def test_detector_guard_accepts_a_graph_equal_to_fp32(photos, core_detector):
    from face_perception.detection.int8 import guard_detections

    figures = guard_detections(core_detector, core_detector, calibration_images(photos))
    assert figures["faces"] == figures["images"] == 7
    assert figures["worst_iou"] == 1.0 and figures["worst_landmark_px"] == 0.0


def test_detect_cli_reports_the_int8_refusal(photos, capsys):
    from face_perception.cli import main

    assert main(["detect", str(photos / "obama.jpg"), "--backend", "onnx-int8"]) == 2
    assert "int8 detector refused" in capsys.readouterr().err


def test_calibration_folder_must_hold_images(tmp_path):
    with pytest.raises(QuantizationError, match="calibration folder not found: .*nowhere"):
        calibration_images(tmp_path / "nowhere")
    (tmp_path / "notes.txt").write_text("no photos here")
    with pytest.raises(QuantizationError, match="no images in the calibration folder"):
        calibration_images(tmp_path)


def test_recognition_commands_run_the_int8_embedder_beside_the_fp32_detector(photos, capsys):
    from face_perception.cli import main

    assert main(["verify", str(photos / "obama.jpg"), str(photos / "obama2.jpg"),
                 "--backend", "onnx-int8"]) == 0
    assert capsys.readouterr().out.startswith("same person: similarity 0.9")
