"""The toolkit's VGGFace2 layout (train_list.txt + bb_landmark CSV) as a Dataset that aligns
each real photo crop from its given five points."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template
from face_perception.data import DatasetError
from face_perception.data.landmarks import (
    read_vggface2_landmarks,
    write_landmark_list,
    write_vggface2_landmarks,
)
from face_perception.data.vggface2 import read_vggface2_list
from face_perception.imageio import ImageError
from face_perception.recognition.model_meta import ModelMeta
from face_perception.recognition.training.aligned_dataset import (
    AlignedFaceDataset,
    ChipToTensor,
    load_vggface2_training_set,
)
from test.face_crops import PEOPLE, augmented_crop, detected_faces


@pytest.fixture(scope="module")
def vggface2(photos, tmp_path_factory):
    """$VGGFace2_ROOT with train/n00000k/<img>_01.jpg loose crops, meta/train_list.txt and
    bb_landmark/loose_landmark_train.csv (+ loose_bb_train.csv, as published)."""
    root = tmp_path_factory.mktemp("vggface2")
    faces = detected_faces(photos)
    rng = np.random.default_rng(5)
    names, points, boxes = [], {}, {}
    for k, files in enumerate(PEOPLE.values(), start=2):
        ident = f"n{k:06d}"
        (root / "train" / ident).mkdir(parents=True)
        for j in range(4):
            image, lm = faces[files[j % len(files)]]
            crop, crop_lm = augmented_crop(image, lm, rng)
            name = f"{ident}/{j + 1:04d}_01"
            cv2.imwrite(str(root / "train" / f"{name}.jpg"), crop)
            names.append(f"{name}.jpg")
            points[name] = crop_lm
            boxes[name] = (10, 10, 180, 180)
    (root / "meta").mkdir()
    (root / "meta" / "train_list.txt").write_text("\n".join(names) + "\n")
    (root / "bb_landmark").mkdir()
    write_vggface2_landmarks(root / "bb_landmark" / "loose_landmark_train.csv", points)
    (root / "bb_landmark" / "loose_bb_train.csv").write_text(
        '"NAME_ID","X","Y","W","H"\n'
        + "".join(f'"{k}",{x},{y},{w},{h}\n' for k, (x, y, w, h) in boxes.items()))
    return root


def open_set(root, **kw):
    return read_vggface2_list(root / "train", root / "meta" / "train_list.txt",
                              root / "bb_landmark", **kw)


def test_list_reads_identities_labels_and_landmarks_in_list_order(vggface2):
    faces = open_set(vggface2)
    assert faces.identities == ["n000002", "n000003"] and len(faces) == 8
    assert [label for _, label in faces.samples] == [0, 0, 0, 0, 1, 1, 1, 1]
    table = read_vggface2_landmarks(vggface2 / "bb_landmark" / "loose_landmark_train.csv")
    assert np.allclose(faces.landmarks[5], table["n000003/0002_01"], atol=1e-3)


def test_dataset_aligns_each_crop_onto_the_model_template(vggface2, photos):
    meta = ModelMeta.arcface_112(name="t", architecture="mobilefacenet")
    ds = load_vggface2_training_set(vggface2 / "train", vggface2 / "meta" / "train_list.txt",
                                    vggface2 / "bb_landmark", meta=meta)
    assert ds.num_classes == 2 and ds.targets == [0] * 4 + [1] * 4
    x, label = ds[4]
    assert isinstance(x, torch.Tensor) and x.shape == (3, 112, 112) and x.dtype == torch.float32
    assert label == 1 and -1.0 <= float(x.min()) < 0 < float(x.max()) <= 1.0
    # The chip of an augmented crop matches the chip of the original photo: alignment undid
    # the random scale, rotation and shift (only brightness and resampling differ).
    image, lm = detected_faces(photos)["biden.jpg"]
    reference = align_to_template(image, lm, ARCFACE_TEMPLATE_112, 112).astype(np.float32)
    chip = ds.faces.chip(4, meta).astype(np.float32)
    centre = (slice(20, 100), slice(20, 92))

    def zscore(a):
        a = cv2.cvtColor(a, cv2.COLOR_BGR2GRAY)[centre]
        return (a - a.mean()) / a.std()

    corr = float(np.mean(zscore(chip) * zscore(reference)))
    assert corr > 0.9, corr
    # RGB order and (x - 127.5) / 127.5, as the metadata says.
    expected = (chip[..., ::-1].transpose(2, 0, 1) - 127.5) / 127.5
    assert np.allclose(x.numpy(), expected, atol=1e-5)


def test_dataset_feeds_a_dataloader_with_workers_and_a_custom_transform(vggface2):
    meta = ModelMeta.arcface_112(name="t", architecture="mobilefacenet")
    ds = AlignedFaceDataset(open_set(vggface2), meta=meta)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    assert [b[0].shape[0] for b in batches] == [3, 3, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), torch.tensor([0] * 4 + [1] * 4))
    assert torch.equal(batches[0][0][1], ds[1][0])
    flipped = AlignedFaceDataset(open_set(vggface2), meta=meta,
                                 transform=lambda chip: ChipToTensor(meta)(chip[:, ::-1]))
    assert torch.equal(flipped[2][0], ds[2][0].flip(-1))


def test_landmarks_may_also_be_an_lfw_style_list(vggface2, tmp_path):
    table = read_vggface2_landmarks(vggface2 / "bb_landmark" / "loose_landmark_train.csv")
    txt = write_landmark_list(tmp_path / "landmarks.txt",
                              {f"{k}.jpg": v for k, v in table.items()})
    faces = read_vggface2_list(vggface2 / "train", vggface2 / "meta" / "train_list.txt", txt)
    assert np.allclose(faces.landmarks, open_set(vggface2).landmarks, atol=1e-3)


def test_bad_input_names_the_file_and_line(vggface2, tmp_path):
    lst = vggface2 / "meta" / "train_list.txt"
    csv_path = vggface2 / "bb_landmark" / "loose_landmark_train.csv"
    # A list line without landmarks.
    extra = tmp_path / "train_list.txt"
    extra.write_text(lst.read_text() + "n000003/0099_01.jpg\n")
    with pytest.raises(DatasetError, match=rf"train_list.txt:9: no landmarks for "
                                           rf"n000003/0099_01.jpg in .*{csv_path.name}"):
        read_vggface2_list(vggface2 / "train", extra, vggface2 / "bb_landmark")
    # A CSV row with a missing column.
    lines = csv_path.read_text().splitlines()
    bad_dir = tmp_path / "bb"
    bad_dir.mkdir()
    lines[3] = lines[3].rsplit(",", 1)[0]
    (bad_dir / "loose_landmark_train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"loose_landmark_train.csv:4: expected 11 columns"):
        read_vggface2_list(vggface2 / "train", lst, bad_dir)
    # A wrong header, a missing landmark folder, an image that is not there.
    (bad_dir / "loose_landmark_train.csv").write_text("NAME,X\n")
    with pytest.raises(DatasetError, match=r"loose_landmark_train.csv:1: expected the header"):
        read_vggface2_list(vggface2 / "train", lst, bad_dir)
    with pytest.raises(FileNotFoundError, match="landmarks not found"):
        read_vggface2_list(vggface2 / "train", lst, tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="image list not found"):
        read_vggface2_list(vggface2 / "train", tmp_path / "no_list.txt", vggface2 / "bb_landmark")
    empty_root = tmp_path / "train"
    empty_root.mkdir()
    with pytest.raises(DatasetError, match=r"train_list.txt:1: image not found: .*0001_01.jpg"):
        read_vggface2_list(empty_root, lst, vggface2 / "bb_landmark")


def test_truncated_image_is_reported_by_name_when_read(vggface2, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(vggface2, root)
    victim = root / "train" / "n000002" / "0003_01.jpg"
    victim.write_bytes(victim.read_bytes()[:300])
    ds = AlignedFaceDataset(open_set(root))
    assert ds[0][0].shape == (3, 112, 112)
    with pytest.raises(ImageError, match="0003_01.jpg"):
        ds[2]
