"""Specifications of ``face-perception detect`` on the real photos."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face_perception.cli import main
from test.proc import child_env, hang_guard


def test_detect_prints_json_per_image_and_writes_annotated_images(photos, tmp_path, capsys):
    out_dir = tmp_path / "annotated"
    code = main(["detect", str(photos / "obama.jpg"), str(photos / "biden.jpg"), "--json",
                 "--out", str(out_dir)])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in records] == [str(photos / "obama.jpg"), str(photos / "biden.jpg")]
    for r in records:
        assert len(r["faces"]) == 1
        face = r["faces"][0]
        assert len(face["box"]) == 4 and len(face["landmarks"]) == 5 and face["score"] > 0.9
        original = cv2.imread(r["image"])
        annotated = cv2.imread(r["annotated"])
        assert annotated.shape == original.shape == (r["height"], r["width"], 3)
        # The box outline is drawn in green at the reported place.
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        edge = annotated[y1 + 5:y2 - 5, x1].astype(int)
        assert (edge[:, 1] > 150).mean() > 0.8 and (edge[:, 2] < 100).mean() > 0.8
        assert np.abs(annotated.astype(int) - original.astype(int)).mean() < 10


def test_detect_reports_bad_files_one_line_each_and_continues(photos, tmp_path, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    missing = tmp_path / "missing.png"
    good = tmp_path / "good.jpg"
    shutil.copy(photos / "obama2.jpg", good)
    code = main(["detect", str(broken), str(missing), str(good), "--json"])
    assert code == 1
    captured = capsys.readouterr()
    errors = captured.err.strip().splitlines()
    assert len(errors) == 2
    assert "broken.jpg" in errors[0] and "decode" in errors[0]
    assert "missing.png" in errors[1] and "not found" in errors[1]
    records = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["image"] for r in records] == [str(good)] and len(records[0]["faces"]) == 1


def test_detect_command_runs_as_a_program_on_a_folder(photos, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("obama.jpg", "32bit.png"):
        shutil.copy(photos / name, folder / name)
    out = subprocess.run([sys.executable, "-m", "face_perception.cli", "detect", str(folder),
                          "--backend", "torch", "--threshold", "0.8"],
                         capture_output=True, text=True, env=child_env(), timeout=hang_guard(120))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].endswith("32bit.png: 1 face(s)") and "score" in lines[1]
    assert any(line.endswith("obama.jpg: 1 face(s)") for line in lines)


def test_detect_with_bad_option_value_gives_one_line_error(photos, capsys):
    code = main(["detect", str(photos / "obama.jpg"), "--threshold", "3"])
    assert code == 2
    assert capsys.readouterr().err.strip().count("\n") == 0


def test_detect_backbone_yunet_uses_its_own_threshold_and_rejects_unknown(photos, capsys):
    from face_perception.detection import Detector

    code = main(["detect", str(photos / "obama.jpg"), "--json", "--backbone", "yunet"])
    assert code == 0
    (record,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    (face,) = record["faces"]
    (direct,) = Detector(backbone="yunet").detect(cv2.imread(str(photos / "obama.jpg")))
    np.testing.assert_allclose(face["box"], direct.box, atol=0.01)
    assert face["score"] > Detector(backbone="yunet").score_threshold == 0.87
    with pytest.raises(SystemExit) as exit_info:
        main(["detect", str(photos / "obama.jpg"), "--backbone", "yunet2"])
    assert exit_info.value.code == 2
    assert "yunet2" in capsys.readouterr().err
