"""``face-perception enroll / recognize / verify / embed / align / eval`` on real photos."""
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from face_perception.cli import main
from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from test.proc import child_env, hang_guard


@pytest.fixture(scope="module")
def people(photos, tmp_path_factory):
    root = tmp_path_factory.mktemp("people")
    (root / "obama").mkdir()
    (root / "biden").mkdir()
    shutil.copy(photos / "obama.jpg", root / "obama")
    shutil.copy(photos / "biden.jpg", root / "biden")
    return root


@pytest.fixture(scope="module")
def gallery_file(people, tmp_path_factory):
    path = tmp_path_factory.mktemp("gallery") / "people"
    assert main(["enroll", str(people), "--gallery", str(path)]) == 0
    return path


def run_json(capsys, argv):
    code = main(argv)
    out = capsys.readouterr()
    return code, [json.loads(line) for line in out.out.splitlines() if line.strip()], out.err


def test_enroll_writes_a_gallery_of_every_subfolder(gallery_file):
    g = Gallery.load(gallery_file, model_id="dlib_resnet")
    assert sorted(g.names) == ["biden", "obama"]
    assert g.sources("biden") == ["biden/biden.jpg"]


def test_recognize_names_other_photos_and_writes_annotated_images(capsys, gallery_file,
                                                                  photos, tmp_path):
    files = [str(photos / n) for n in ("obama2.jpg", "obama3.jpg", "biden.jpg")]
    code, records, _ = run_json(capsys, ["recognize", *files, "--gallery", str(gallery_file),
                                         "--json", "--out", str(tmp_path)])
    assert code == 0
    assert [[f["identity"] for f in r["faces"]] for r in records] == \
        [["obama"], ["obama"], ["biden"]]
    for r in records:
        face = r["faces"][0]
        assert face["similarity"] > 0.9062 and len(face["landmarks"]) == 5
        annotated = read_image_bgr(r["annotated"])
        original = read_image_bgr(r["image"])
        assert annotated.shape == original.shape
        assert np.abs(annotated.astype(int) - original.astype(int)).sum() > 0


def test_recognize_reports_unknown_people_and_bad_files(capsys, photos, tmp_path):
    only_biden = tmp_path / "g"
    (tmp_path / "p" / "biden").mkdir(parents=True)
    shutil.copy(photos / "biden.jpg", tmp_path / "p" / "biden")
    assert main(["enroll", str(tmp_path / "p"), "--gallery", str(only_biden)]) == 0
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    capsys.readouterr()
    code, records, err = run_json(capsys, ["recognize", str(photos / "obama2.jpg"),
                                           str(broken), "--gallery", str(only_biden),
                                           "--json"])
    assert code == 1
    assert records[0]["faces"][0]["identity"] is None
    assert "broken.jpg" in err and len(err.strip().splitlines()) == 1


def test_verify_gives_similarity_distance_threshold_and_verdict(capsys, photos):
    code, (same,), _ = run_json(capsys, ["verify", str(photos / "obama.jpg"),
                                         str(photos / "obama3.jpg"), "--json"])
    assert code == 0 and same["same"] is True
    assert same["similarity"] > same["threshold"] and same["distance"] < same["distance_threshold"]
    code, (diff,), _ = run_json(capsys, ["verify", str(photos / "obama2.jpg"),
                                         str(photos / "biden.jpg"), "--json"])
    assert code == 0 and diff["same"] is False
    assert diff["distance"] == pytest.approx(np.sqrt(2 - 2 * diff["similarity"]), abs=1e-3)
    main(["verify", str(photos / "obama.jpg"), str(photos / "biden.jpg")])
    assert "different people: similarity" in capsys.readouterr().out


def test_embed_writes_pickle_free_npz_and_reports_images_without_faces(capsys, photos,
                                                                       tmp_path):
    wall = tmp_path / "wall.jpg"
    cv2.imwrite(str(wall), read_image_bgr(photos / "obama.jpg")[:80, :200])
    out = tmp_path / "emb.npz"
    code = main(["embed", str(photos / "obama.jpg"), str(wall), str(photos / "biden.jpg"),
                 "--output", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "no face found in" in err and "wall.jpg" in err
    with np.load(out, allow_pickle=False) as data:
        emb, images = data["embeddings"], list(data["images"])
        assert str(data["model"]) == "dlib_resnet"
    assert emb.shape == (2, 128) and emb.dtype == np.float32
    assert [p.split("/")[-1] for p in images] == ["obama.jpg", "biden.jpg"]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert float(emb[0] @ emb[1]) < 0.9


def test_enroll_with_name_extends_an_existing_gallery(capsys, people, photos, tmp_path):
    path = tmp_path / "g"
    assert main(["enroll", str(people), "--gallery", str(path)]) == 0
    capsys.readouterr()
    code, (summary,), _ = run_json(capsys, ["enroll", str(photos / "obama2.jpg"),
                                            str(photos / "obama3.jpg"), "--name", "obama",
                                            "--gallery", str(path), "--json"])
    assert code == 0 and summary["embedded"] == 2
    g = Gallery.load(path)
    assert g.count("obama") == 3 and g.count("biden") == 1


def test_gallery_of_another_model_or_missing_file_is_a_one_line_error(capsys, photos,
                                                                      tmp_path):
    Gallery("ir_50_512", 512).save(tmp_path / "other")
    code = main(["recognize", str(photos / "obama.jpg"), "--gallery", str(tmp_path / "other")])
    err = capsys.readouterr().err
    assert code == 2 and "'ir_50_512'" in err and len(err.strip().splitlines()) == 1
    code = main(["recognize", str(photos / "obama.jpg"), "--gallery", str(tmp_path / "none")])
    assert code == 2 and "gallery index not found" in capsys.readouterr().err


def test_align_cli_writes_chips_outside_the_source(capsys, people, tmp_path):
    assert main(["align", str(people), str(tmp_path / "aligned"), "--crop-size", "112"]) == 0
    assert read_image_bgr(tmp_path / "aligned" / "obama" / "obama.jpg").shape == (112, 112, 3)
    assert main(["align", str(people), str(people / "inside")]) == 2
    assert "must be outside data" in capsys.readouterr().err


def test_console_entry_point_runs_verify(photos):
    out = subprocess.run([sys.executable, "-m", "face_perception.cli", "verify",
                          str(photos / "obama.jpg"), str(photos / "obama2.jpg"), "--json"],
                         capture_output=True, text=True, env=child_env(), timeout=hang_guard(120))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["same"] is True


def test_eval_cli_prints_metrics_json_and_writes_the_roc_png(capsys, photos, tmp_path):
    tree = tmp_path / "tree"
    for person, files in (("obama", ["obama.jpg", "obama2.jpg", "obama3.jpg"]),
                          ("biden", ["biden.jpg"])):
        (tree / person).mkdir(parents=True)
        for f in files:
            shutil.copy(photos / f, tree / person)
    code, (metrics,), _ = run_json(capsys, ["eval", str(tree), "--num-pairs", "6", "--json",
                                            "--out", str(tmp_path / "out")])
    assert code == 0
    assert metrics["num_pairs"] == 6 and metrics["auc"] == 1.0
    assert (tmp_path / "out" / "roc_tree.png").read_bytes()[:4] == b"\x89PNG"


def test_commands_accept_a_saved_model_folder(capsys, photos, tmp_path):
    from face_perception.learners import FaceRecognitionLearner

    folder = FaceRecognitionLearner(backbone="dlib_resnet", device="cpu").save(tmp_path / "m")
    a, b = str(photos / "obama.jpg"), str(photos / "obama2.jpg")
    _, (default,), _ = run_json(capsys, ["verify", a, b, "--json"])
    code, (saved,), _ = run_json(capsys, ["verify", a, b, "--json", "--model", str(folder),
                                          "--backend", "torch"])
    assert code == 0 and saved["model"] == "dlib_resnet"
    assert saved["similarity"] == pytest.approx(default["similarity"], abs=2e-4)
