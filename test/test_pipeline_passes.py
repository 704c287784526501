"""run_passes and identity_mode_for, the whole-input run that face-perception video and bag share:
on a real tracked scene the offline run gives exactly FacePipeline.offline_names of a first pass,
keeps an undecodable frame in its place as None, counts both passes, and stops where a second
read ends early; the live run is one pass of process()."""
import numpy as np
import pytest

from face_perception.gallery import Gallery
from face_perception.imageio import read_image_bgr
from face_perception.pipeline import FacePipeline, identity_mode_for, run_passes
from face_perception.recognition import Recognizer
from face_perception.tracking import FaceTracker
from test.tracking_scenes import Cutouts, scene

BAD = 3  # the frame index that will not decode


@pytest.fixture(scope="module")
def frames(photos, core_detector):
    return scene(Cutouts(photos, core_detector), 10, lambda i: [("obama", 150 + 10 * i, 240, 110)])


@pytest.fixture(scope="module")
def recognizer(photos, core_detector, dlib_embedder):
    g = Gallery(dlib_embedder.meta.name, dlib_embedder.meta.embedding_size)
    for person in ("obama", "biden"):
        img = read_image_bgr(photos / f"{person}.jpg")
        g.add(person, dlib_embedder.embed_faces(img, core_detector.detect(img)[:1]))
    return Recognizer(dlib_embedder, g, detector=core_detector)


def _pipeline(core_detector, recognizer, mode):
    return FacePipeline(core_detector, recognizer, FaceTracker(), identity_mode=mode)


def _source(frames, reads=None):
    """read_frames over frame indices; the n-th read gives ``reads[n]`` frames (default all)."""
    done = []

    def read_frames():
        n = reads[len(done)] if reads else len(frames)
        done.append(n)
        return [(frames[i].stamp_ns, i) for i in range(n)]

    return read_frames


def _decode(frames):
    return lambda i: None if i == BAD else frames[i].image


def test_identity_mode_for_defaults_records_and_refusals():
    assert identity_mode_for(None, True, rereadable=True) == ("offline", "offline")
    assert identity_mode_for(None, True, rereadable=False) == ("live", "live")
    assert identity_mode_for("live", True, rereadable=True) == ("live", "live")
    assert identity_mode_for("offline", False, rereadable=False) == ("live", "single-frame")
    with pytest.raises(ValueError, match="cannot be read twice"):
        identity_mode_for("offline", True, rereadable=False)
    with pytest.raises(ValueError, match="'sideways'"):
        identity_mode_for("sideways", False, rereadable=True)


def test_offline_run_is_offline_names_of_a_first_pass_with_the_bad_frame_in_place(
        frames, core_detector, recognizer):
    ticks = []
    pipeline = _pipeline(core_detector, recognizer, "offline")
    out = list(run_passes(pipeline, _source(frames), _decode(frames),
                          progress=lambda: ticks.append(1)))
    reference = _pipeline(core_detector, recognizer, "offline")
    kept = [reference.process(f.image, f.stamp_ns).without_image()
            for i, f in enumerate(frames) if i != BAD]
    expected = iter(reference.offline_names(kept))
    assert len(ticks) == 2 * len(frames) and pipeline.passes == 2
    assert [f.index for f in out] == list(range(len(frames)))
    assert [f.stamp_ns for f in out] == [f.stamp_ns for f in frames]
    for frame in out:
        if frame.index == BAD:
            assert frame.result is None and frame.seconds == 0.0
            continue
        want = next(expected)
        assert frame.result.names == want.names == ["obama"]  # also before confirmation
        assert frame.result.track_ids == want.track_ids and want.track_ids[0] is not None
        assert np.array_equal(frame.result.image, frames[frame.index].image)
        assert frame.seconds > 0


def test_offline_run_stops_where_the_second_read_ends_and_can_leave_pixels_out(
        frames, core_detector, recognizer):
    out = list(run_passes(_pipeline(core_detector, recognizer, "offline"),
                          _source(frames, reads=[len(frames), 6]), _decode(frames),
                          attach_image=False))
    assert [f.index for f in out] == list(range(6))
    assert all(f.result.image is None for f in out if f.result is not None)


def test_live_run_is_one_pass_of_process(frames, core_detector, recognizer):
    ticks = []
    pipeline = _pipeline(core_detector, recognizer, "live")
    out = list(run_passes(pipeline, _source(frames, reads=[len(frames)]), _decode(frames),
                          progress=lambda: ticks.append(1)))
    reference = _pipeline(core_detector, recognizer, "live")
    want = [reference.process(f.image, f.stamp_ns) for i, f in enumerate(frames) if i != BAD]
    assert len(ticks) == len(frames) and pipeline.passes == 1
    assert out[BAD].result is None
    got = [f.result for f in out if f.result is not None]
    assert [r.names for r in got] == [r.names for r in want]
    assert [r.track_ids for r in got] == [r.track_ids for r in want]
