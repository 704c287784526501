"""``face-perception gallery`` show/check/remove/rename on real gallery files."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from face_perception.cli import gallery as gallery_cli
from face_perception.gallery import Gallery, GalleryError


def run(argv, capsys):
    parser = argparse.ArgumentParser(prog="face-perception")
    sub = parser.add_subparsers(dest="command")
    gallery_cli.register(sub)
    args = parser.parse_args(["gallery", *argv])
    code = args.func(args)
    return code, capsys.readouterr().out


@pytest.fixture
def people(tmp_path):
    g = Gallery("dlib_resnet_v1", 4)
    g.add("obama", np.eye(4, dtype=np.float32)[:2], sources=["o1.jpg", "o2.jpg"])
    g.add("biden", np.eye(4, dtype=np.float32)[2])
    g.add("Zoë", np.eye(4, dtype=np.float32)[3])
    return g.save(tmp_path / "people.json")


def test_gallery_show_lists_identities_and_samples(people, capsys):
    code, out = run(["show", str(people)], capsys)
    assert code == 0
    assert "model dlib_resnet_v1, 4-d, 3 identities, 4 samples" in out
    assert "obama  2 samples" in out and "biden  1 sample\n" in out
    code, out = run(["show", str(people), "--json", "--sources"], capsys)
    data = json.loads(out)
    assert data["num_identities"] == 3 and data["model_id"] == "dlib_resnet_v1"
    assert data["identities"][0] == {"name": "obama", "samples": 2,
                                     "sources": ["o1.jpg", "o2.jpg"]}
    assert data["identities"][2]["name"] == "Zoë"


def test_gallery_remove_and_rename_save_in_place(people, capsys):
    code, out = run(["remove", str(people), "biden"], capsys)
    assert code == 0 and "now has 2" in out
    code, out = run(["rename", str(people), "Zoë", "zoe"], capsys)
    assert code == 0
    assert Gallery.load(people).names == ["obama", "zoe"]
    with pytest.raises(GalleryError, match="'nobody'.*nothing removed"):
        run(["remove", str(people), "obama", "nobody"], capsys)
    assert Gallery.load(people).names == ["obama", "zoe"]  # all-or-nothing


def test_gallery_check_reports_damage(people, capsys):
    code, out = run(["check", str(people)], capsys)
    assert code == 0 and out.startswith("ok: 3 identities, 4 samples")
    arrays = people.parent / json.loads(people.read_text())["arrays"]["file"]
    arrays.write_bytes(arrays.read_bytes()[:-10])
    with pytest.raises(GalleryError, match="truncated"):
        run(["check", str(people)], capsys)
