"""``detector-train`` / ``detector-eval`` sub-commands on a WIDER-format set from real photos."""
import argparse
import json

import pytest

from face_perception.cli import detection_training
from face_perception.learners import RetinaFaceLearner
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
    from face_perception.detection import Detector

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


@pytest.mark.timeout(180)
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


@pytest.mark.timeout(180)
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


def test_detector_eval_names_missing_data(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        _run(["detector-eval", str(tmp_path / "nowhere")], capsys)
