"""WIDER FACE annotation reading and training augmentation."""
import numpy as np
import pytest

from face_perception.detection.augment import (
    Annotations,
    TrainTransform,
    mirror,
    random_square_crop,
)
from face_perception.detection.wider import (
    WiderFaceDataset,
    WiderFormatError,
    read_bbx_gt,
    read_difficulty_list,
    read_label_file,
    write_label_file,
)

LABEL = """# 0--Parade/a.jpg
449 330 122 149 488.906 373.643 0.0 542.089 376.442 0.0 515.031 412.83 0.0 485.174 425.893 0.0 538.357 431.491 0.0 0.82
78 221 7 8 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0 -1.0
# 0--Parade/b.jpg 1024 768
10 20 30 40
5 5 0 9
# 1--Handshaking/empty.jpg
"""  # noqa: E501

BBX_GT = """0--Parade/a.jpg
2
449 330 122 149 2 0 0 0 0 0
78 221 7 8 2 0 0 1 0 0
0--Parade/none.jpg
0
0 0 0 0 0 0 0 0 0 0
0--Parade/c.jpg
1
10 10 20 20 0 0 0 0 0 0
"""


def test_label_file_gives_corner_boxes_landmarks_and_flags(tmp_path):
    (tmp_path / "label.txt").write_text(LABEL)
    samples = read_label_file(tmp_path / "label.txt")
    assert [s.name for s in samples] == ["0--Parade/a.jpg", "0--Parade/b.jpg",
                                         "1--Handshaking/empty.jpg"]
    a, b, empty = samples
    assert a.image_path == tmp_path / "images" / "0--Parade/a.jpg"
    np.testing.assert_allclose(a.boxes, [[449, 330, 571, 479], [78, 221, 85, 229]])
    np.testing.assert_allclose(a.landmarks[0], [488.906, 373.643, 542.089, 376.442, 515.031,
                                                412.83, 485.174, 425.893, 538.357, 431.491],
                               rtol=1e-6)
    assert a.has_landmarks.tolist() == [True, False]
    # "path width height" path lines, 4-number face lines, zero-width faces dropped.
    np.testing.assert_allclose(b.boxes, [[10, 20, 40, 60]])
    assert b.has_landmarks.tolist() == [False]
    assert len(empty) == 0


def test_label_file_round_trips_through_writer(tmp_path):
    (tmp_path / "label.txt").write_text(LABEL)
    samples = read_label_file(tmp_path / "label.txt")
    write_label_file(tmp_path / "again.txt", samples)
    again = read_label_file(tmp_path / "again.txt")
    for s, t in zip(samples, again):
        assert s.name == t.name
        np.testing.assert_allclose(s.boxes, t.boxes, atol=0.06)
        np.testing.assert_allclose(s.landmarks, t.landmarks, atol=1e-3)
        assert s.has_landmarks.tolist() == t.has_landmarks.tolist()


@pytest.mark.parametrize("text, line, message", [
    ("# a.jpg\n1 2 3\n", 2, "expected 4, 19 or 20 numbers"),
    ("# a.jpg\n1 2 3 4\n1 2 x 4\n", 3, "expected numbers"),
    ("1 2 3 4\n", 1, "before the first"),
    ("# a.jpg\n1 2 3 nan\n", 2, "non-finite"),
    ("#\n", 1, "without an image path"),
])
def test_malformed_label_file_names_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "label.txt"
    path.write_text(text)
    with pytest.raises(WiderFormatError, match=message) as err:
        read_label_file(path)
    assert f"{path}:{line}:" in str(err.value)


def test_missing_label_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_label_file(tmp_path / "nope.txt")


def test_official_val_ground_truth_marks_invalid_faces_ignored(tmp_path):
    (tmp_path / "gt.txt").write_text(BBX_GT)
    samples = read_bbx_gt(tmp_path / "gt.txt", tmp_path / "images")
    assert [s.name for s in samples] == ["0--Parade/a.jpg", "0--Parade/none.jpg",
                                         "0--Parade/c.jpg"]
    assert samples[0].ignore.tolist() == [False, True]
    assert len(samples[1]) == 0
    np.testing.assert_allclose(samples[2].boxes, [[10, 10, 30, 30]])


def test_truncated_ground_truth_names_the_image(tmp_path):
    (tmp_path / "gt.txt").write_text("0--Parade/a.jpg\n3\n1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(WiderFormatError, match=r"gt.txt:1: '0--Parade/a.jpg' announces 3"):
        read_bbx_gt(tmp_path / "gt.txt", tmp_path)
    (tmp_path / "gt.txt").write_text("0--Parade/a.jpg\nthree\n")
    with pytest.raises(WiderFormatError, match=r"gt.txt:2: expected the face count"):
        read_bbx_gt(tmp_path / "gt.txt", tmp_path)


def test_dataset_finds_official_layout_and_difficulty_lists(tmp_path):
    split = tmp_path / "wider_face_split"
    split.mkdir()
    (split / "wider_face_val_bbx_gt.txt").write_text(BBX_GT)
    (split / "wider_easy_val.txt").write_text("a 1\nc\n")
    (split / "wider_hard_val.txt").write_text("0--Parade/a.jpg 1 2\n0--Parade/c.jpg 1\n")
    ds = WiderFaceDataset(tmp_path, splits=["val"])
    assert len(ds) == 3
    assert ds[0].image_path == tmp_path / "WIDER_val/images/0--Parade/a.jpg"
    assert ds[0].subsets["easy"].tolist() == [True, False]
    assert ds[2].subsets["easy"].tolist() == [False]
    assert ds[0].subsets["hard"].tolist() == [True, True]
    assert ds.difficulties == ["easy", "hard"]


def test_difficulty_list_with_bad_index_is_refused(tmp_path):
    (tmp_path / "easy.txt").write_text("a.jpg 0\n")
    with pytest.raises(WiderFormatError, match="easy.txt:1: face indices are 1-based"):
        read_difficulty_list(tmp_path / "easy.txt")


def test_dataset_without_annotations_says_what_it_looked_for(tmp_path):
    with pytest.raises(FileNotFoundError, match="label.txt"):
        WiderFaceDataset(tmp_path, splits=["train"])


def _face_annotations():
    boxes = np.array([[10, 20, 50, 70]], np.float32)
    # left eye, right eye, nose, left mouth, right mouth (image left/right)
    lms = np.array([[20, 35, 40, 35, 30, 45, 22, 58, 38, 58]], np.float32)
    return Annotations(boxes, lms, np.array([True]))


def test_mirror_moves_boxes_and_swaps_left_right_landmarks():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :100] = 255
    flipped, ann = mirror(image, _face_annotations())
    assert flipped[0, 150].tolist() == [255, 255, 255] and flipped[0, 50].tolist() == [0, 0, 0]
    np.testing.assert_allclose(ann.boxes, [[150, 20, 190, 70]])
    pts = ann.landmarks.reshape(5, 2)
    # The old right eye (x=40) is the new image-left eye at 200-40=160.
    np.testing.assert_allclose(pts, [[160, 35], [180, 35], [170, 45], [162, 58], [178, 58]])
    assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]
    back_img, back = mirror(flipped, ann)
    np.testing.assert_array_equal(back_img, image)
    np.testing.assert_allclose(back.landmarks, _face_annotations().landmarks)


def test_mirror_leaves_missing_landmarks_marked_missing():
    ann = Annotations(np.array([[10, 20, 50, 70]], np.float32), np.full((1, 10), -1, np.float32),
                      np.array([False]))
    _, out = mirror(np.zeros((100, 200, 3), np.uint8), ann)
    assert (out.landmarks == -1).all()


def test_square_crop_keeps_faces_whose_centres_stay_inside():
    rng = np.random.default_rng(0)
    image = np.zeros((300, 400, 3), np.uint8)
    boxes = np.array([[10, 10, 40, 40], [300, 200, 360, 260], [150, 100, 200, 160]], np.float32)
    ann = Annotations(boxes, np.zeros((3, 10), np.float32), np.zeros(3, bool))
    for _ in range(50):
        crop, out, cropped = random_square_crop(image, ann, rng)
        assert cropped and crop.shape[0] == crop.shape[1] and len(out.boxes) >= 1
        side = crop.shape[0]
        assert (out.boxes >= 0).all() and (out.boxes <= side).all()
        assert (out.boxes[:, 2] > out.boxes[:, 0]).all()


def test_train_transform_gives_normalised_targets_inside_unit_square(tmp_path):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    transform = TrainTransform(size=128, flip=True)
    for _ in range(20):
        tensor, targets = transform(image, _face_annotations(), rng)
        assert tensor.shape == (3, 128, 128) and tensor.dtype == np.float32
        assert (targets["boxes"] >= 0).all() and (targets["boxes"] <= 1).all()
        has = targets["has_landmarks"]
        assert ((targets["landmarks"][~has]) == -1).all()


def test_train_transform_keeps_image_left_landmarks_first_under_flips():
    # Without the left/right swap, every mirrored sample would put the "left" eye on the right.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    transform = TrainTransform(size=128, flip=True, crop=False, distort=False)
    mirrored = 0
    for _ in range(40):
        _, targets = transform(image, _face_annotations(), rng)
        pts = targets["landmarks"].reshape(-1, 5, 2)[0]
        assert pts[0, 0] < pts[1, 0] and pts[3, 0] < pts[4, 0]
        box = targets["boxes"][0]
        mirrored += bool(box[0] > 0.5)  # the face (x 10..50 of 320) lands on the right
        assert box[0] <= pts[:, 0].min() and pts[:, 0].max() <= box[2]
    assert 5 < mirrored < 35
