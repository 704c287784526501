"""``detector-train`` / ``detector-eval`` sub-commands on a WIDER-format set from real photos, and
the model folder they write as the model of ``detect`` and the Detector."""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from face_perception.cli import detection_training
from face_perception.detection import Detector
from face_perception.detection.weights import WeightsError
from face_perception.imageio import read_image_bgr
from face_perception.learners import RetinaFaceLearner
from test.proc import child_env, hang_guard
from test.wider_fixture import build_wider_root


def _run(argv, capsys):
    parser = argparse.ArgumentParser(prog="face-perception")
    sub = parser.add_subparsers(dest="command", required=True)
    detection_training.register(sub)
    args = parser.parse_args(argv)
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture(scope="module")
def wider_root(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("wider_cli")
    build_wider_root(root, photos, Detector(backbone="mnet", backend="onnx"), n_train=4,
                     n_val=4)
    return root


def test_detector_eval_prints_ap_of_the_pretrained_model(wider_root, capsys):
    code, out = _run(["detector-eval", str(wider_root), "--model", "pretrained",
                      "--target-size", "320", "--max-size", "640", "--json"], capsys)
    assert code == 0
    result = json.loads(out.strip().splitlines()[-1])
    assert result["num_images"] == 4 and result["ap"] > 0.9


def test_detector_train_fine_tunes_and_writes_a_loadable_model(wider_root, tmp_path, capsys):
    out_dir = tmp_path / "tuned"
    code, out = _run(["detector-train", str(wider_root / "train" / "label.txt"), "--out",
                      str(out_dir), "--epochs", "2", "--image-size", "128", "--batch-size", "2",
                      "--lr", "0.001", "--quiet"], capsys)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["epochs"] == 2 and len(summary["loss"]) == 2
    assert (tmp_path / "tuned.ckpt" / "retinaface_mnet-0002.pth").is_file()
    learner = RetinaFaceLearner(backbone="mnet", device="cpu")
    learner.load(out_dir, verbose=False)
    assert learner.epochs_trained == 2
    # Two small fine-tuning steps from the pretrained detector keep it a working detector.
    code, out = _run(["detector-eval", str(wider_root), "--split", "val", "--model",
                      str(out_dir), "--target-size", "320", "--max-size", "640", "--json"],
                     capsys)
    assert json.loads(out.strip().splitlines()[-1])["ap"] > 0.5


def test_detector_train_resumes_from_a_checkpoint(wider_root, tmp_path, capsys):
    common = [str(wider_root), "--init", "backbone", "--image-size", "96", "--batch-size", "2",
              "--lr", "0.01", "--quiet", "--temp-path", str(tmp_path / "ckpt")]
    _run(["detector-train", *common, "--out", str(tmp_path / "a"), "--epochs", "2"], capsys)
    code, out = _run(["detector-train", *common, "--out", str(tmp_path / "b"), "--epochs", "2",
                      "--resume", "1"], capsys)
    assert code == 0
    through = json.loads((tmp_path / "a" / "a.json").read_text())
    resumed = json.loads((tmp_path / "b" / "b.json").read_text())
    # Same weights, byte for byte: the resumed run repeats epoch 2 exactly.
    assert through["sha256"]["a.pth"] == resumed["sha256"]["b.pth"]
    assert json.loads(out.strip().splitlines()[-1])["epochs"] == 2


@pytest.mark.parametrize("flag, value, message", [
    ("--lr", "0", "lr must be positive"),
    ("--batch-size", "0", "batch_size must be at least 1"),
    ("--threads", "-1", "threads must be a non-negative integer"),
    ("--lr-steps", "a,b", "lr_steps must be comma-separated epoch numbers"),
])
def test_detector_train_checks_its_settings_before_any_work(wider_root, tmp_path, capsys, flag,
                                                            value, message):
    with pytest.raises(ValueError, match=message):
        _run(["detector-train", str(wider_root), "--out", str(tmp_path / "x"), flag, value,
              "--quiet"], capsys)
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.ckpt").exists()


def test_detector_train_logs_epochs_and_validation_to_tensorboard(wider_root, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tmp_path / "tb"
    code, out = _run(["detector-train", str(wider_root), "--out", str(tmp_path / "m"),
                      "--epochs", "2", "--image-size", "96", "--batch-size", "2",
                      "--lr", "0.001", "--val", str(wider_root), "--val-after", "2",
                      "--logging-path", str(tb), "--quiet"], capsys)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    events = EventAccumulator(str(tb))
    events.Reload()
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [1, 2]
    assert [e.value for e in losses] == pytest.approx(summary["loss"], abs=1e-4)
    assert [e.step for e in events.Scalars("train/images_per_s")] == [1, 2]
    assert [(e.step, e.value) for e in events.Scalars("val/ap")] == [
        (2, pytest.approx(summary["val"][0]["ap"]))]


def test_detector_eval_names_missing_data(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _run(["detector-eval", str(tmp_path / "nowhere")], capsys)


def test_a_trained_model_folder_drives_detect_and_the_detector(wider_root, tmp_path, photos,
                                                               capsys):
    # One model-folder convention: what detector-train writes is what detect --model, the
    # Detector (hence the node's model_path) and detector-eval --model take.
    out_dir = tmp_path / "tuned"
    code, _ = _run(["detector-train", str(wider_root / "train" / "label.txt"), "--out",
                    str(out_dir), "--epochs", "1", "--image-size", "128", "--batch-size", "2",
                    "--lr", "0.001", "--quiet"], capsys)
    assert code == 0
    photo = photos / "obama.jpg"
    command = Path(sys.executable).with_name("face-perception")  # the installed entry point
    done = subprocess.run([str(command), "detect", str(photo), "--model", str(out_dir),
                           "--json"], capture_output=True, text=True, env=child_env(),
                          timeout=hang_guard(240))
    assert done.returncode == 0, done.stderr
    cli_faces = json.loads(done.stdout.strip().splitlines()[-1])["faces"]
    assert len(cli_faces) == 1 and cli_faces[0]["score"] > 0.8

    image = read_image_bgr(photo)
    onnx_faces = Detector(model_path=out_dir).detect(image)  # the CLI's defaults
    assert len(onnx_faces) == 1
    np.testing.assert_allclose(cli_faces[0]["box"], onnx_faces[0].box, atol=0.006)  # JSON: 2 dp
    # The torch backend reads the folder's .pth (sha256 checked) and agrees with the bare file.
    by_folder = Detector(model_path=out_dir, backend="torch").detect(image)
    by_file = Detector(model_path=out_dir / "tuned.pth", backend="torch").detect(image)
    np.testing.assert_array_equal(by_folder[0].box, by_file[0].box)
    np.testing.assert_allclose(by_folder[0].box, onnx_faces[0].box, atol=0.05)
    # The folder's backbone comes from its metadata, not from the caller's default.
    assert Detector(model_path=str(out_dir), backbone="resnet").backbone == "mnet"

    weights = out_dir / "tuned.pth"
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    for backend in ("onnx", "torch"):
        with pytest.raises(WeightsError, match="checksum mismatch.*tuned.pth"):
            Detector(model_path=out_dir, backend=backend)
    done = subprocess.run([str(command), "detect", str(photo), "--model", str(out_dir)],
                          capture_output=True, text=True, env=child_env(), timeout=hang_guard(240))
    assert done.returncode != 0 and "checksum mismatch" in done.stderr


def test_detector_eval_and_detect_take_a_bare_onnx_model(wider_root, tmp_path, photos, capsys):
    from face_perception.detection.export import default_mnet_onnx

    onnx_file = tmp_path / "mine.onnx"
    onnx_file.write_bytes(default_mnet_onnx().read_bytes())
    code, out = _run(["detector-eval", str(wider_root), "--model", str(onnx_file),
                      "--target-size", "320", "--max-size", "640", "--json"], capsys)
    assert code == 0
    assert json.loads(out.strip().splitlines()[-1])["ap"] > 0.9
    assert len(Detector(model_path=onnx_file).detect(read_image_bgr(photos / "biden.jpg"))) == 1


def test_detect_names_a_model_path_that_is_neither_folder_nor_file(tmp_path, photos, capsys):
    with pytest.raises(FileNotFoundError, match="nothing_here.*detector-train"):
        Detector(model_path=tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model metadata empty.json"):
        Detector(model_path=tmp_path / "empty")
