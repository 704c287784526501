"""Bad training or validation input is found before the first step and before anything is
written (a text file named .jpg, an undecodable record in train.rec, a broken validation set),
skipped files are reported, and ``drop_last: false`` never makes a batch batch norm cannot
train on (one image, or an empty slice in a process)."""
import shutil

import cv2
import numpy as np
import pytest

from face_perception.data import DatasetError
from face_perception.data.recordio import write_recordio_dataset
from face_perception.recognition.training import TrainConfig, train
from face_perception.recognition.training.data import BatchOrder
from test import training_data


@pytest.fixture(scope="module")
def train_dir(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("checks")
    return training_data.build(root, photos, size=32, synthetic=4, per_identity=4, held_out=0,
                               chips={})[0]


def _cfg(data, temp, **kw):
    args = dict(device="cpu", backbone="mobilefacenet", network_head="arcface",
                input_size=[32, 32], embedding_size=32, iters=2, batch_size=4, lr=0.05,
                stages=[], num_workers=0, dataset=str(data), temp_path=str(temp), silent=True)
    return TrainConfig(**{**args, **kw})


def test_a_text_file_named_jpg_stops_the_run_before_anything_is_written(train_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(train_dir, data)
    fake = data / "synthetic_02" / "notes.jpg"
    fake.write_text("this is not a photo\n")
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match=f"{fake}: not an image"):
        train(_cfg(data, out))
    assert not out.exists()


def test_an_undecodable_record_in_train_rec_is_named_before_the_first_step(train_dir, tmp_path):
    images, labels = [], []
    for label, person in enumerate(sorted(p for p in train_dir.iterdir())):
        for f in sorted(person.iterdir()):
            images.append(cv2.imencode(".jpg", cv2.imread(str(f)))[1].tobytes())
            labels.append(label)
    images[5] = b"\xff\xd8\xff\xdb" + bytes(300) + b"\xff\xd9"  # JPEG markers, no image
    rec = tmp_path / "rec"
    write_recordio_dataset(rec, images, labels, image_size=(32, 32))
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match=r"train.rec: record 6: image header cannot be read"):
        train(_cfg(rec, out))
    assert not out.exists()


def test_a_broken_validation_set_stops_the_run_before_anything_is_written(train_dir, tmp_path):
    val = tmp_path / "val"
    shutil.copytree(train_dir, val)
    bad = val / "synthetic_01" / "001.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40) + b"IEND\xaeB`\x82")
    out = tmp_path / "run"
    with pytest.raises(DatasetError, match=str(bad)):
        train(_cfg(train_dir, out, val_dataset=str(val)))
    assert not out.exists()
    with pytest.raises(FileNotFoundError, match="nowhere.bin"):
        train(_cfg(train_dir, out, val_dataset=str(tmp_path / "nowhere.bin")))
    assert not out.exists()


def test_skipped_files_are_reported_unless_not_verbose(train_dir, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(train_dir, data)
    (data / "empty_person").mkdir()
    (data / "synthetic_00" / "readme.txt").write_text("x")
    train(_cfg(data, tmp_path / "a", silent=False))
    err = capsys.readouterr().err
    assert "identities without images (1): empty_person" in err
    assert "readme.txt: not an image extension (.txt)" in err
    train(_cfg(data, tmp_path / "b", silent=False, verbose=False))
    err = capsys.readouterr().err
    assert "empty_person" not in err and "readme.txt" not in err


def test_without_drop_last_every_image_is_used_once_in_even_batches():
    order = BatchOrder(17, 8, world=2, rank=0, seed=1, drop_last=False)
    other = BatchOrder(17, 8, world=2, rank=1, seed=1, drop_last=False)
    assert order.per_epoch == 2
    batches = [[order.batch_at(k), other.batch_at(k)] for k in range(2)]
    assert [[len(s) for s in b] for b in batches] == [[5, 4], [4, 4]]
    seen = sorted(i for b in batches for s in b for i, _, _ in s)
    assert seen == list(range(17))
    with pytest.raises(DatasetError, match="batches of 1 image.*needs at least 2"):
        BatchOrder(3, 4, world=2, drop_last=False)


def test_without_drop_last_training_passes_epoch_ends(train_dir, tmp_path):
    # 16 images in batches of 6: epochs of 3 batches (6, 5, 5), never a 4-image remainder
    stats = train(_cfg(train_dir, tmp_path, batch_size=6, drop_last=False, iters=4))
    assert len(stats["loss_history"]) == 4 and np.isfinite(stats["loss_history"]).all()
