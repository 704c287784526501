"""ImageFolder listing, seeded random pairs and LFW pairs.txt lists."""
from __future__ import annotations

import shutil
from itertools import combinations

import numpy as np
import pytest

from face_perception.data import DatasetError
from face_perception.data.imagefolder import list_image_folder
from face_perception.data.pairs import labels_of, random_pairs, read_lfw_pairs, write_lfw_pairs
from face_perception.recognition.verification import evaluate_verification


@pytest.fixture
def people(tmp_path, photos):
    """obama (3 real photos), biden (1) and a few decoys that must be skipped."""
    root = tmp_path / "people"
    (root / "obama").mkdir(parents=True)
    (root / "biden").mkdir()
    (root / "nobody").mkdir()
    (root / ".cache").mkdir()
    for i, name in enumerate(["obama.jpg", "obama2.jpg", "obama3.jpg"]):
        shutil.copy(photos / name, root / "obama" / f"{i}.jpg")
    shutil.copy(photos / "biden.jpg", root / "biden" / "b.JPG")
    (root / "obama" / "notes.txt").write_text("not an image")
    (root / "obama" / ".DS_Store").write_bytes(b"\0")
    (root / "nobody" / "readme.md").write_text("empty identity")
    (root / "stray.jpg").write_bytes((photos / "biden.jpg").read_bytes())
    return root


def test_image_folder_lists_identities_and_reports_what_it_skipped(people):
    f = list_image_folder(people)
    assert f.identities == ["biden", "obama"]
    assert len(f) == 4 and [p.name for p in f.images_of("obama")] == ["0.jpg", "1.jpg", "2.jpg"]
    assert f.images_of("biden")[0].name == "b.JPG"  # extension match ignores case
    assert f.empty_identities == ["nobody"]
    reasons = {p.name: why for p, why in f.skipped}
    assert reasons["notes.txt"].startswith("not an image extension (.txt)")
    assert reasons[".DS_Store"] == "hidden" and reasons[".cache"] == "hidden"
    assert reasons["stray.jpg"] == "file outside any identity folder"
    report = f.report()
    assert "4 images of 2 identities" in report and "notes.txt" in report and "nobody" in report


def test_image_folder_follows_linked_identities_but_not_link_loops(people, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.jpg").write_bytes((people / "biden" / "b.JPG").read_bytes())
    (people / "linked").symlink_to(elsewhere, target_is_directory=True)
    (people / "obama" / "loop").symlink_to(people, target_is_directory=True)
    f = list_image_folder(people)
    assert f.identities == ["biden", "linked", "obama"] and len(f.images_of("obama")) == 3
    assert dict((p.name, why) for p, why in f.skipped)["loop"] == "symlinked folder not followed"


def test_image_folder_check_images_reports_corrupt_files(people):
    (people / "biden" / "broken.jpg").write_bytes(b"\xff\xd8 this is not really a jpeg")
    f = list_image_folder(people, check_images=True)
    assert dict((p.name, why) for p, why in f.skipped)["broken.jpg"] == \
        "cannot be decoded as an image"
    assert len(f.images_of("biden")) == 1


def test_image_folder_min_images_leaves_out_small_identities(people):
    f = list_image_folder(people, min_images=2)
    assert f.identities == ["obama"] and "biden" in f.empty_identities


def test_image_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        list_image_folder(tmp_path / "missing")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(NotADirectoryError, match="file.jpg"):
        list_image_folder(tmp_path / "file.jpg")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.jpg").write_bytes(b"x")
    with pytest.raises(DatasetError, match="no identity sub-folders"):
        list_image_folder(flat)
    empty = tmp_path / "empty"
    (empty / "alice").mkdir(parents=True)
    (empty / "alice" / "a.txt").write_text("x")
    with pytest.raises(DatasetError, match="no usable images"):
        list_image_folder(empty)


def synthetic_folder(tmp_path, counts):
    root = tmp_path / "synthetic"
    for i, c in enumerate(counts):
        (root / f"id{i:02d}").mkdir(parents=True)
        for j in range(c):
            (root / f"id{i:02d}" / f"{j}.jpg").write_bytes(b"")
    return list_image_folder(root)


def test_random_pairs_are_seeded_balanced_distinct_and_correctly_labelled(tmp_path):
    folder = synthetic_folder(tmp_path, [1, 2, 5, 8, 10, 12, 6])
    pairs = random_pairs(folder, 200, seed=3)
    assert pairs == random_pairs(folder, 200, seed=3)
    assert pairs != random_pairs(folder, 200, seed=4)
    labels = labels_of(pairs)
    assert labels.sum() == 100 and labels[0::2].all() and not labels[1::2].any()
    keys = {frozenset((p.first, p.second)) for p in pairs}
    assert len(keys) == 200  # no pair drawn twice, no image paired with itself
    for p in pairs:
        assert (p.first.parent == p.second.parent) == p.issame and p.first != p.second
    # Balanced folds: every tenth of the list has as many same as different pairs.
    assert all(chunk.sum() == 10 for chunk in np.array_split(labels, 10))


def test_random_pairs_can_use_every_possible_same_pair(tmp_path):
    folder = synthetic_folder(tmp_path, [3, 2, 1])
    all_same = {frozenset(c) for imgs in folder.by_identity().values()
                for c in combinations(imgs, 2)}
    pairs = random_pairs(folder, 8, seed=0)  # 4 same pairs exist, 4 asked
    assert {frozenset((p.first, p.second)) for p in pairs if p.issame} == all_same
    with pytest.raises(DatasetError, match="asked for 5 same-person pairs but only 4 exist"):
        random_pairs(folder, 10)
    with pytest.raises(DatasetError, match="num_pairs"):
        random_pairs(folder, 1)


def test_random_pairs_feed_the_evaluation(tmp_path):
    folder = synthetic_folder(tmp_path, [4] * 30)
    pairs = random_pairs(folder, 300, seed=1)
    labels = labels_of(pairs)
    rng = np.random.default_rng(0)
    scores = np.where(labels, rng.normal(0.8, 0.05, 300), rng.normal(0.2, 0.05, 300))
    r = evaluate_verification(scores, labels)
    assert r.accuracy_mean == 1.0 and r.num_same == r.num_different == 150


LFW_LINES = [("Alice", 1, 2), ("Bob", 1, 3), ("Alice", 1, "Bob", 2), ("Bob", 2, "Carol", 1)]


@pytest.fixture
def lfw_root(tmp_path):
    root = tmp_path / "lfw"
    for name, n in [("Alice", 2), ("Bob", 3), ("Carol", 1)]:
        (root / name).mkdir(parents=True)
        for i in range(1, n + 1):
            (root / name / f"{name}_{i:04d}.jpg").write_bytes(b"")
    return root


def test_lfw_pairs_read_three_and_four_column_lines(tmp_path, lfw_root):
    path = write_lfw_pairs(tmp_path / "pairs.txt", LFW_LINES, sets=1)
    assert path.read_text().splitlines()[0] == "1\t2"
    pairs = read_lfw_pairs(path, lfw_root)
    assert labels_of(pairs).tolist() == [True, True, False, False]
    assert pairs[0].first == lfw_root / "Alice" / "Alice_0001.jpg"
    assert pairs[1].second == lfw_root / "Bob" / "Bob_0003.jpg"
    assert pairs[3].second == lfw_root / "Carol" / "Carol_0001.jpg"
    # No header: fine too; comments and blank lines are ignored.
    plain = tmp_path / "plain.txt"
    plain.write_text("# my pairs\n\nAlice 1 2\n  Bob   1   Carol 1  \n")
    assert labels_of(read_lfw_pairs(plain, lfw_root)).tolist() == [True, False]


@pytest.mark.parametrize("text, message", [
    ("1\t2\nAlice\t1\t2\nBob\t1\n", r"pairs.txt:3: expected 3 fields .* got 2"),
    ("Alice\t1\tx\n", r"pairs.txt:1: image number must be a positive integer, got 'x'"),
    ("Alice\t1\t2\nAlice\t1\t9\n", r"pairs.txt:2: image not found: .*Alice_0009.jpg"),
    ("1\t3\nAlice\t1\t2\nBob\t1\t2\n", "header promises 6 pairs, the file has 2"),
    ("\n# nothing\n", "no pairs in the file"),
])
def test_lfw_pairs_errors_name_file_and_line(tmp_path, lfw_root, text, message):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_lfw_pairs(path, lfw_root)


def test_lfw_pairs_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="pairs.txt"):
        read_lfw_pairs(tmp_path / "pairs.txt", tmp_path)


def test_data_package_exports_every_public_name_lazily():
    import face_perception.data as data

    for name in data.__all__:
        assert getattr(data, name) is not None, name
    with pytest.raises(AttributeError):
        data.no_such_thing  # noqa: B018
