"""``face-perception convert``: ImageFolder <-> RecordIO and verification .bin <-> image pairs,
byte for byte, on real photos; bad input is named and leaves no half-written output."""
from __future__ import annotations

import os
import shutil
import stat

import cv2
import numpy as np
import pytest

from face_perception.cli import main as cli_main
from face_perception.data.pairs import read_lfw_pairs
from face_perception.data.recordio import RecordIODataset
from face_perception.data.verification_bin import read_verification_bin, write_verification_bin
from test.face_crops import PEOPLE, augmented_crop, detected_faces


def tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def people(photos, tmp_path):
    """obama/ (3 JPEG photos + a PNG crop in a sub-folder), biden/ (1 photo + a PNG crop)."""
    root = tmp_path / "people"
    rng = np.random.default_rng(0)
    faces = detected_faces(photos)
    for person, files in PEOPLE.items():
        (root / person / "crops").mkdir(parents=True)
        for f in files:
            shutil.copy(photos / f, root / person / f)
        crop, _ = augmented_crop(*faces[files[0]], rng)
        cv2.imwrite(str(root / person / "crops" / "crop.png"), crop)
    return root


def test_imagefolder_recordio_round_trip_is_lossless(people, tmp_path, capsys):
    rec = tmp_path / "rec"
    assert cli_main(["convert", str(people), str(rec)]) == 0
    assert "imagefolder-to-recordio" in capsys.readouterr().out
    assert sorted(p.name for p in rec.iterdir()) == ["property", "train.idx", "train.lst",
                                                     "train.rec"]
    original = tree_bytes(people)
    with RecordIODataset(rec) as ds:
        assert len(ds) == 6 and ds.num_classes == 2
        records = [ds.read(i) for i in range(len(ds))]
    # Identities sorted (biden = 0, obama = 1), each file's bytes stored unchanged.
    assert [label for label, _ in records] == [0, 0, 1, 1, 1, 1]
    assert sorted(data for _, data in records) == sorted(original.values())
    back = tmp_path / "back"
    assert cli_main(["convert", str(rec), str(back), "--json"]) == 0
    assert '"names_from": "train.lst"' in capsys.readouterr().out
    assert tree_bytes(back) == original
    # Without the list file the folders are the labels, the bytes still the same.
    (rec / "train.lst").unlink()
    plain = tmp_path / "plain"
    assert cli_main(["convert", str(rec), str(plain)]) == 0
    got = tree_bytes(plain)
    assert sorted(got) == ["0/00000001.jpg", "0/00000002.png", "1/00000003.jpg",
                           "1/00000004.jpg", "1/00000005.jpg", "1/00000006.png"]
    assert sorted(got.values()) == sorted(original.values())


def test_bin_pairs_round_trip_is_lossless(photos, tmp_path, capsys):
    from face_perception.alignment import ARCFACE_TEMPLATE_112, align_to_template

    faces = detected_faces(photos)
    chips = {n: cv2.imencode(".jpg", align_to_template(img, lm, ARCFACE_TEMPLATE_112, 112))[1]
             .tobytes() for n, (img, lm) in faces.items()}
    pairs = [("obama.jpg", "obama2.jpg", True), ("obama.jpg", "biden.jpg", False),
             ("obama2.jpg", "obama3.jpg", True), ("obama3.jpg", "biden.jpg", False)]
    src = write_verification_bin(tmp_path / "tiny.bin", [chips[n] for a, b, _ in pairs
                                                         for n in (a, b)],
                                 [s for *_, s in pairs])
    folder = tmp_path / "tiny_pairs"
    assert cli_main(["convert", str(src), str(folder)]) == 0
    listed = read_lfw_pairs(folder / "pairs.txt", folder)
    assert [p.issame for p in listed] == [True, False, True, False]
    assert listed[1].first.read_bytes() == chips["obama.jpg"]
    assert listed[1].second.read_bytes() == chips["biden.jpg"]
    again = tmp_path / "again.bin"
    assert cli_main(["convert", str(folder), str(again)]) == 0
    assert "pairs-to-bin" in capsys.readouterr().out
    a, b = read_verification_bin(src), read_verification_bin(again)
    assert a.images == b.images and a.issame.tolist() == b.issame.tolist()


def test_truncated_image_is_named_and_nothing_is_written(people, tmp_path, capsys):
    victim = people / "obama" / "obama2.jpg"
    victim.write_bytes(victim.read_bytes()[:-5000])
    rec = tmp_path / "rec"
    assert cli_main(["convert", str(people), str(rec)]) == 2
    err = capsys.readouterr().err
    assert f"{victim}: truncated JPEG" in err
    assert not rec.exists() and not list(tmp_path.glob(".rec.*"))


def test_corrupt_record_is_named(people, tmp_path, capsys):
    rec = tmp_path / "rec"
    assert cli_main(["convert", str(people), str(rec)]) == 0
    with RecordIODataset(rec) as ds:
        offset = ds._offsets[ds.keys[2]]
    data = bytearray((rec / "train.rec").read_bytes())
    data[offset:offset + 4] = b"\0\0\0\0"
    (rec / "train.rec").write_bytes(bytes(data))
    out = tmp_path / "out"
    assert cli_main(["convert", str(rec), str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{rec / 'train.rec'}: no RecordIO record at byte {offset}" in err
    assert not out.exists()


def test_bad_list_file_line_and_existing_destination_are_refused(people, tmp_path, capsys):
    rec = tmp_path / "rec"
    assert cli_main(["convert", str(people), str(rec)]) == 0
    lines = (rec / "train.lst").read_text().splitlines()
    lines[1] = lines[1].replace("biden/", "../../escape/")
    (rec / "train.lst").write_text("\n".join(lines) + "\n")
    assert cli_main(["convert", str(rec), str(tmp_path / "x")]) == 2
    assert "train.lst:2: path must be <identity>/<file> inside the folder" in \
        capsys.readouterr().err
    before = tree_bytes(rec)
    assert cli_main(["convert", str(people), str(rec)]) == 2
    assert "destination exists (not overwritten)" in capsys.readouterr().err
    assert tree_bytes(rec) == before
    (tmp_path / "bad.bin").write_bytes(b"not a pickle")
    assert cli_main(["convert", str(tmp_path / "bad.bin"), str(tmp_path / "p")]) == 2
    assert "bad.bin: not a readable verification .bin" in capsys.readouterr().err


def test_recordio_without_list_keeps_every_label_and_ordinary_permissions(photos, tmp_path):
    """Thirteen classes: label folders sort as text when read back ('10' before '2'), so they
    are zero-padded and the rebuilt .rec gives every image its label again."""
    from face_perception.data.recordio import write_recordio_dataset

    img = cv2.imread(str(photos / "obama.jpg"))[:96, :96]
    images = [cv2.imencode(".jpg", np.roll(img, 3 * i, axis=1))[1].tobytes() for i in range(13)]
    write_recordio_dataset(tmp_path / "rec", images, list(range(13)), image_size=(96, 96))
    folder = tmp_path / "folder"
    assert cli_main(["convert", str(tmp_path / "rec"), str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir())[:3] == ["00", "01", "02"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask
    assert cli_main(["convert", str(folder), str(tmp_path / "again")]) == 0
    with RecordIODataset(tmp_path / "rec") as a, RecordIODataset(tmp_path / "again") as b:
        assert [a.read(i) for i in range(13)] == [b.read(i) for i in range(13)]
