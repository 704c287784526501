"""``face-perception enroll --video / --bag``: real clips made from the shipped photos with camera
effects (zoom, shake, motion blur, defocus, JPEG). The main track's best distinct views are
enrolled with their quality; a track that holds two people, or a face that already is someone
else, is refused with nothing written."""
import json

import numpy as np
import pytest

from face_perception.bag.rosbag_io import write_image_bag
from face_perception.cli import main
from face_perception.detection import Detector
from face_perception.gallery import Gallery
from test.enrolment_clips import switch_clip, views_clip, write_video
from test.tracking_scenes import Cutouts

PER_VIEW = 6  # frames per photo: obama.jpg, obama2.jpg, obama.jpg again -> 18 frames


@pytest.fixture(scope="module")
def clips(photos, tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    cut = Cutouts(photos, Detector())
    views = views_clip(cut, per_view=PER_VIEW)
    bag = write_image_bag(folder / "views_bag", ((f.stamp_ns, f.image) for f in views),
                          topic="/camera/image_raw")
    return {"views": write_video(views, folder / "views.mp4"),
            "switch": write_video(switch_clip(cut, per_person=PER_VIEW),
                                  folder / "switch.mp4"),
            "bag": bag}


def enrol(capsys, *argv):
    code = main(["enroll", *argv, "--json"])
    out = capsys.readouterr()
    lines = out.out.strip().splitlines()
    return code, (json.loads(lines[-1]) if lines else None), out.err


def test_video_enrols_distinct_views_of_the_main_track_with_their_quality(clips, tmp_path,
                                                                         capsys):
    gallery = tmp_path / "people.json"
    code, summary, err = enrol(capsys, "--video", str(clips["views"]), "--name", "obama",
                               "--gallery", str(gallery), "--max-views", "3")
    assert code == 0, err
    assert (summary["frames"], summary["tracks"], summary["enrolled"]) == (3 * PER_VIEW, 1, 3)
    g = Gallery.load(gallery)
    assert g.names == ["obama"] and g.count("obama") == 3
    qualities = g.qualities("obama")
    assert np.all((qualities > 0) & (qualities <= 1)), qualities
    np.testing.assert_allclose(qualities, summary["qualities"], atol=1e-4)
    # Distinct: the views come from both photos shown (obama2.jpg fills frames 6..11).
    frames = [int(s.rsplit(" ", 1)[1]) for s in g.sources("obama")]
    assert any(PER_VIEW <= f < 2 * PER_VIEW for f in frames), frames
    assert any(f < PER_VIEW or f >= 2 * PER_VIEW for f in frames), frames
    # The views are far apart: no two of them are near copies.
    emb = g.samples("obama")
    assert (emb @ emb.T)[~np.eye(3, dtype=bool)].max() < 0.999


def test_video_whose_track_switches_person_is_refused(clips, tmp_path, capsys):
    gallery = tmp_path / "people.json"
    code, summary, err = enrol(capsys, "--video", str(clips["switch"]), "--name", "obama",
                               "--gallery", str(gallery))
    assert code == 1
    assert summary["tracks"] == 1 and summary["enrolled"] == 0
    assert "two people" in summary["refused"] and "two people" in err
    assert not gallery.exists()


def test_face_that_already_is_someone_else_is_refused_unless_allowed(clips, tmp_path, capsys):
    gallery = tmp_path / "people.json"
    assert enrol(capsys, "--video", str(clips["views"]), "--name", "obama", "--gallery",
                 str(gallery), "--max-views", "2")[0] == 0
    before = Gallery.load(gallery).num_samples
    code, summary, err = enrol(capsys, "--video", str(clips["views"]), "--name", "Barack",
                               "--gallery", str(gallery), "--max-views", "2")
    assert code == 1 and summary["matched"][0] == "obama" and "already matches 'obama'" in err
    assert Gallery.load(gallery).num_samples == before
    code, summary, err = enrol(capsys, "--video", str(clips["views"]), "--name", "Barack",
                               "--gallery", str(gallery), "--max-views", "2",
                               "--allow-duplicate")
    assert code == 0, err
    assert Gallery.load(gallery).names == ["obama", "Barack"]


def test_bag_topic_enrols_like_the_video(clips, tmp_path, capsys):
    gallery = tmp_path / "people.json"
    code, summary, err = enrol(capsys, "--bag", str(clips["bag"]), "--topic",
                               "/camera/image_raw", "--name", "Zoë", "--gallery", str(gallery),
                               "--max-views", "3")
    assert code == 0, err
    assert summary["frames"] == 3 * PER_VIEW and Gallery.load(gallery).count("Zoë") == 3


@pytest.mark.parametrize("argv, message", [
    (["--video", "none.mp4", "--name", "x"], "video file not found"),
    (["--video", "{views}", "--name", "../../etc/passwd"], "not allowed"),
    (["--video", "{views}", "--name", "unknown"], "reserved"),
    (["--video", "{views}"], "need --name"),
    (["--bag", "{bag}", "--name", "x"], "--topic"),
    (["photos", "--video", "{views}", "--name", "x"], "exactly one of"),
])
def test_bad_clip_arguments_are_refused_with_nothing_written(clips, tmp_path, capsys, argv,
                                                             message):
    argv = [a.format(views=clips["views"], bag=clips["bag"]) for a in argv]
    gallery = tmp_path / "people.json"
    assert main(["enroll", *argv, "--gallery", str(gallery)]) == 2
    assert message in capsys.readouterr().err
    assert not gallery.exists()
