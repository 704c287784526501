"""Whose ids key the recognizer node's identities (TrackingPipeline.update_received, no ROS): the
sender's while it sends ids, its own tracker's when the sender gives none, the received ids
handed on unchanged with tracking off."""
import numpy as np

from face_perception.tracking import FaceTracker, TrackingPipeline
from face_perception.types import Face

FRAME_NS = 33_333_333


def face(i):
    """One face moving right 5 px a frame, as a detector reports it."""
    x = 100.0 + 5 * i
    return Face(np.array([x, 100, x + 80, 200], np.float32), 0.95, None)


def run(pipeline, ids_per_frame, start=0):
    return [pipeline.update_received(None, [face(i)], (start + i) * FRAME_NS, [ids])[0].track_id
            for i, ids in enumerate(ids_per_frame)]


def test_upstream_ids_key_the_tracks_while_the_sender_tracks():
    pipe = TrackingPipeline(None, FaceTracker(), upstream_max_age=2.0)
    # The sender's first frames of a track carry no id yet: our tracker sees them (tentative).
    assert run(pipe, [None, None]) == [None, None] and not pipe.upstream
    # Then its ids: kept as sent, any string; a face it does not track yet stays untracked.
    assert run(pipe, ["person-7", "person-7", None, "person-7"], start=2) == \
        ["person-7", "person-7", None, "person-7"]
    assert pipe.upstream and pipe.active_tracks == 1
    # The sender stops giving ids for longer than upstream_max_age: our own tracker takes over,
    # with ids of its own once its track is confirmed (3 frames).
    later = int(10e9 / FRAME_NS)
    own = run(pipe, [None] * 5, start=later)
    assert not pipe.upstream
    assert own[:2] == [None, None] and own[2] is not None and own[2:] == [own[2]] * 3
    assert pipe.active_tracks == 1


def test_a_sender_without_ids_gets_our_tracker_from_the_start():
    pipe = TrackingPipeline(None, FaceTracker())
    ids = run(pipe, [""] * 6)  # empty strings are "no id", as in Detection2D.id
    assert ids[:2] == [None, None] and ids[2] == "1" and ids[2:] == ["1"] * 4
    assert not pipe.upstream


def test_tracking_off_hands_the_received_ids_on_and_judges_frames_alone():
    pipe = TrackingPipeline(None, None)
    out = pipe.update_received(None, [face(0), face(1)], 0, ["x", None])
    assert [t.track_id for t in out] == ["x", None]
    assert [t.category for t in out] == [None, None]
