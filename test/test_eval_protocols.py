"""Evaluation protocols on small sets written in the real file layouts from real photo crops:
LFW pairs.txt + lfw_landmark.txt (no detector), IJB-B 1:1 templates, and an ImageFolder with
fewer pairs than asked."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from face_perception.cli import main as cli_main
from face_perception.data import DatasetError
from face_perception.data.imagefolder import list_image_folder
from face_perception.data.landmarks import write_landmark_list
from face_perception.data.pairs import labels_of, random_pairs, write_lfw_pairs
from face_perception.recognition import Embedder
from face_perception.recognition.ijb import (
    IJB_FARS,
    evaluate_ijb,
    read_ijb,
    template_features,
)
from face_perception.recognition.pair_eval import evaluate_verification_dataset
from test.face_crops import PEOPLE, augmented_crop, detected_faces


@pytest.fixture(scope="module")
def embedder():
    return Embedder("dlib_resnet")


# ---------------------------------------------------------------------------- LFW + landmarks
@pytest.fixture(scope="module")
def lfw_root(photos, tmp_path_factory):
    """$LFW_ROOT: lfw/<Name>/<Name>_000n.jpg loose crops, pairs.txt, lfw_landmark.txt."""
    root = tmp_path_factory.mktemp("lfw_root")
    faces = detected_faces(photos)
    rng = np.random.default_rng(11)
    counts = {"Barack_Obama": 6, "Joe_Biden": 4}
    landmarks = {}
    for files, name in zip(PEOPLE.values(), counts):
        (root / "lfw" / name).mkdir(parents=True)
        for n in range(1, counts[name] + 1):
            image, lm = faces[files[(n - 1) % len(files)]]
            crop, crop_lm = augmented_crop(image, lm, rng, size=250)
            rel = f"{name}/{name}_{n:04d}.jpg"
            cv2.imwrite(str(root / "lfw" / rel), crop)
            landmarks[rel] = np.round(crop_lm)  # the published file has whole pixels
    write_landmark_list(root / "lfw_landmark.txt", landmarks)
    same = [("Barack_Obama", 1, 2), ("Barack_Obama", 3, 4), ("Barack_Obama", 5, 6),
            ("Barack_Obama", 1, 4), ("Joe_Biden", 1, 2), ("Joe_Biden", 3, 4)]
    diff = [("Barack_Obama", i, "Joe_Biden", 1 + i % 4) for i in range(1, 7)]
    write_lfw_pairs(root / "pairs.txt", same + diff, sets=1)
    return root


def test_lfw_pairs_with_landmarks_align_from_the_given_points_without_a_detector(
        lfw_root, embedder):
    # detector=None: any attempt to detect would fail, so every face came from the file.
    m = evaluate_verification_dataset(None, embedder, lfw_root / "pairs.txt")
    assert m["dataset_kind"] == "pairs" and m["num_pairs"] == 12
    assert (m["num_same"], m["num_different"]) == (6, 6)
    assert m["alignment"] == f"landmarks from {lfw_root / 'lfw_landmark.txt'}"
    assert m["auc"] == 1.0 and m["accuracy_at_threshold"] == 1.0 and m["skipped_pairs"] == []


def test_lfw_landmark_problems_name_the_file_and_line(lfw_root, embedder, tmp_path):
    lines = (lfw_root / "lfw_landmark.txt").read_text().splitlines()
    bad = tmp_path / "lfw_landmark.txt"
    bad.write_text("\n".join(lines[:2] + [lines[2].rsplit("\t", 1)[0]] + lines[3:]) + "\n")
    with pytest.raises(DatasetError, match=r"lfw_landmark.txt:3: expected 11 columns"):
        evaluate_verification_dataset(None, embedder, lfw_root / "pairs.txt", landmarks=bad)
    bad.write_text("\n".join(line for line in lines if "Joe_Biden_0004" not in line) + "\n")
    with pytest.raises(DatasetError, match=r"lfw_landmark.txt: no landmarks for "
                                           r"Joe_Biden/Joe_Biden_0004.jpg"):
        evaluate_verification_dataset(None, embedder, lfw_root / "pairs.txt", landmarks=bad)


def test_eval_cli_uses_the_landmark_file_beside_the_pair_list(lfw_root, tmp_path, capsys):
    code = cli_main(["eval", str(lfw_root / "pairs.txt"), "--out", str(tmp_path), "--json"])
    assert code == 0
    m = json.loads(capsys.readouterr().out)
    assert m["alignment"].startswith("landmarks from") and m["auc"] == 1.0


# ---------------------------------------------------------------------------- IJB-B
TEMPLATES = {  # template id: (person, [(media id, photo index, faces in that media)])
    1: ("obama", [(101, 0, 2), (102, 1, 1)]),
    2: ("obama", [(103, 2, 1), (104, 0, 1)]),
    3: ("obama", [(105, 1, 2)]),
    4: ("obama", [(106, 2, 1), (107, 1, 1)]),
    5: ("biden", [(201, 0, 2)]),
    6: ("biden", [(202, 0, 1), (203, 0, 1)]),
    7: ("biden", [(204, 0, 3)]),
}


@pytest.fixture(scope="module")
def ijbb(photos, tmp_path_factory):
    """IJBB/loose_crop/<n>.jpg and IJBB/meta/ijbb_{face_tid_mid,name_5pts_score,
    template_pair_label}.txt, space separated as published."""
    root = tmp_path_factory.mktemp("IJBB")
    (root / "loose_crop").mkdir()
    (root / "meta").mkdir()
    faces = detected_faces(photos)
    rng = np.random.default_rng(3)
    tid_mid, five = [], []
    n = 0
    for tid, (person, medias) in TEMPLATES.items():
        for mid, photo, count in medias:
            for _ in range(count):
                n += 1
                image, lm = faces[PEOPLE[person][photo]]
                crop, crop_lm = augmented_crop(image, lm, rng, size=220)
                cv2.imwrite(str(root / "loose_crop" / f"{n}.jpg"), crop)
                tid_mid.append(f"{n}.jpg {tid} {mid}")
                five.append(" ".join([f"{n}.jpg"] + [f"{v:.2f}" for v in crop_lm.ravel()]
                                     + [f"{rng.uniform(0.8, 1.0):.4f}"]))
    pairs = [f"{a} {b} {int(TEMPLATES[a][0] == TEMPLATES[b][0])}"
             for a in TEMPLATES for b in TEMPLATES if a < b]
    (root / "meta" / "ijbb_face_tid_mid.txt").write_text("\n".join(tid_mid) + "\n")
    (root / "meta" / "ijbb_name_5pts_score.txt").write_text("\n".join(five) + "\n")
    (root / "meta" / "ijbb_template_pair_label.txt").write_text("\n".join(pairs) + "\n")
    return root


def test_template_features_average_each_media_then_sum_the_media():
    feats = np.array([[1.0, 0], [3, 0], [0, 1], [0, 5]])
    tids, t = template_features(feats, np.array([7, 7, 7, 9]), np.array([10, 10, 11, 12]))
    assert tids.tolist() == [7, 9]
    # template 7: media 10 -> mean (2, 0), media 11 -> (0, 1); sum (2, 1), normalised
    assert np.allclose(t[0], np.array([2, 1]) / np.sqrt(5)) and np.allclose(t[1], [0, 1])


def test_ijbb_meta_files_are_read_and_cross_checked(ijbb):
    ijb = read_ijb(ijbb)
    assert ijb.name == "ijbb" and len(ijb.images) == 16 and len(ijb.pair_labels) == 21
    assert int(ijb.pair_labels.sum()) == 6 + 3
    assert ijb.templates[:3].tolist() == [1, 1, 1] and ijb.medias[:3].tolist() == [101, 101, 102]
    assert ijb.landmarks.shape == (16, 5, 2) and (ijb.det_scores >= 0.8).all()


def test_ijbb_one_to_one_verification_separates_the_real_faces(ijbb, embedder, tmp_path):
    m = evaluate_ijb(embedder, ijbb, roc_path=tmp_path / "roc.png")
    assert m["protocol"] == "IJBB" and m["num_templates"] == 7 and m["num_images"] == 16
    assert (m["num_same"], m["num_different"]) == (9, 12) and m["auc"] == 1.0
    tar = {t["far"]: t for t in m["tar_at_far"]}
    assert sorted(tar) == sorted(IJB_FARS)
    assert tar[1e-1]["tar"] == 1.0 and tar[1e-1]["achieved_far"] <= 0.1
    for far in IJB_FARS[:-1]:  # 12 impostor pairs cannot measure a FAR of 1e-2 or below
        assert tar[far]["tar"] is None and "needs at least" in tar[far]["reason"]
    assert open(m["roc_png"], "rb").read(4) == b"\x89PNG"
    # Without the flip test, detector scores and feature norms the scores change but still
    # separate the people.
    plain = evaluate_ijb(embedder, ijbb, flip=False, detector_score=False, norm_score=False)
    assert plain["auc"] == 1.0 and plain["threshold"] != m["threshold"]


def test_eval_cli_detects_an_ijb_folder(ijbb, tmp_path, capsys):
    assert cli_main(["eval", str(ijbb), "--out", str(tmp_path), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["dataset_kind"] == "ijb" and m["protocol"] == "IJBB" and m["auc"] == 1.0


def _broken_copy(ijbb, tmp_path, name, edit):
    root = tmp_path / "IJBB"
    shutil.copytree(ijbb / "meta", root / "meta")
    path = root / "meta" / name
    path.write_text(edit(path.read_text().splitlines()))
    return root


@pytest.mark.parametrize("name, edit, error", [
    ("ijbb_face_tid_mid.txt", lambda ls: "\n".join(ls[:2] + [ls[2] + " 5"] + ls[3:]),
     r"ijbb_face_tid_mid.txt:3: expected 3 columns \(image_name template_id media_id\), got 4"),
    ("ijbb_name_5pts_score.txt", lambda ls: "\n".join(ls[:4] + [ls[4].rsplit(" ", 1)[0]]),
     r"ijbb_name_5pts_score.txt:5: expected 12 columns"),
    ("ijbb_name_5pts_score.txt", lambda ls: "\n".join([ls[1], ls[0]] + ls[2:]),
     r"ijbb_name_5pts_score.txt:1: image '2.jpg', but line 1 of ijbb_face_tid_mid.txt is "
     r"'1.jpg'"),
    ("ijbb_template_pair_label.txt", lambda ls: "\n".join(ls + ["1 99 0"]),
     r"ijbb_template_pair_label.txt: pair 22 uses template 99"),
    ("ijbb_template_pair_label.txt", lambda ls: "\n".join(ls[:6] + ["1 2"] + ls[6:]),
     r"ijbb_template_pair_label.txt:7: expected 3 columns"),
    ("ijbb_template_pair_label.txt", lambda ls: "\n".join(ls[:6] + ["1 2 x"] + ls[6:]),
     r"ijbb_template_pair_label.txt:7: expected integers"),
])
def test_bad_ijb_meta_files_name_the_file_and_line(ijbb, tmp_path, name, edit, error):
    with pytest.raises(DatasetError, match=error):
        read_ijb(_broken_copy(ijbb, tmp_path, name, edit))


def test_missing_ijb_meta_file_is_named(ijbb, tmp_path):
    root = tmp_path / "IJBB"
    shutil.copytree(ijbb / "meta", root / "meta")
    (root / "meta" / "ijbb_template_pair_label.txt").unlink()
    with pytest.raises(FileNotFoundError, match="ijbb_template_pair_label.txt"):
        read_ijb(root)


# ---------------------------------------------------------------------------- ImageFolder
def test_random_pairs_allow_fewer_takes_every_pair_spread_over_the_list(tmp_path):
    root = tmp_path / "f"
    for i, c in enumerate([3, 2, 1]):
        (root / f"id{i}").mkdir(parents=True)
        for j in range(c):
            (root / f"id{i}" / f"{j}.jpg").write_bytes(b"")
    folder = list_image_folder(root)
    pairs = random_pairs(folder, 100, allow_fewer=True)
    labels = labels_of(pairs)
    assert (labels.sum(), (~labels).sum()) == (4, 11)  # every pair there is
    assert len({frozenset((p.first, p.second)) for p in pairs}) == 15
    assert all(chunk.any() for chunk in np.array_split(labels, 4))  # same pairs spread out
    with pytest.raises(DatasetError, match="asked for 50 same-person pairs but only 4"):
        random_pairs(folder, 100)


def test_eval_on_a_small_imagefolder_uses_all_pairs_and_says_so(photos, tmp_path, capsys):
    root = tmp_path / "people"
    for person, files in PEOPLE.items():
        (root / person).mkdir(parents=True)
        for f in files:
            shutil.copy(photos / f, root / person / f)
    code = cli_main(["eval", str(root), "--num-pairs", "1000", "--out", str(tmp_path),
                     "--json"])
    out, err = capsys.readouterr()
    assert code == 0
    m = json.loads(out)
    assert (m["num_same"], m["num_different"]) == (3, 3) and m["auc"] == 1.0
    assert "asked for 1000 pairs but" in err and "has only 6 (3 same, 3 different); using " \
        "all of them" in err


# ------------------------------------------------------------- one reader of verification sets
def test_training_validation_reads_a_pair_list_as_evaluation_does(lfw_root):
    from face_perception.recognition.pair_eval import read_verification_pairs
    from face_perception.recognition.training.validation import ValidationSet

    evaluated = read_verification_pairs(lfw_root / "pairs.txt")
    validated = ValidationSet(lfw_root / "pairs.txt")
    assert evaluated.kind == validated.kind == "pairs"
    assert evaluated.root == lfw_root / "lfw"  # images under $LFW_ROOT/lfw, for both
    assert validated.pairs == [(str(p.first), str(p.second)) for p in evaluated.pairs]
    np.testing.assert_array_equal(validated.labels, evaluated.labels)
    assert sorted(validated.images) == evaluated.files
    assert evaluated.landmarks == lfw_root / "lfw_landmark.txt"


def test_training_validation_refuses_an_ijb_folder_naming_it(ijbb):
    from face_perception.recognition.training.validation import ValidationSet

    with pytest.raises(DatasetError, match=f"{ijbb}: an IJB-B/C folder is a template protocol"):
        ValidationSet(ijbb)


def test_small_imagefolder_gives_all_pairs_to_evaluation_and_balanced_pairs_to_validation(
        photos, tmp_path):
    from face_perception.recognition.pair_eval import read_verification_pairs

    for person, files in PEOPLE.items():
        (tmp_path / person).mkdir()
        for f in files:
            shutil.copy(photos / f, tmp_path / person / f)
    folder = list_image_folder(tmp_path)
    same = sum(n * (n - 1) // 2 for n in map(len, folder.by_identity().values()))
    evaluated = read_verification_pairs(tmp_path, num_pairs=1000)
    validated = read_verification_pairs(tmp_path, num_pairs=1000, balanced=True)
    total = len(folder) * (len(folder) - 1) // 2
    assert len(evaluated.pairs) == total and "using all of them" in evaluated.note
    assert sum(validated.labels) == same and len(validated.pairs) == min(2 * same, total)
