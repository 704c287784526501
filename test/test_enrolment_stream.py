"""The recognizer's enrolment sessions, in process (no DDS): fed frame by frame they never wait,
take the largest face only from a fresh frame, end on their frame count, cancel, abort or
timeout, refuse two people and a face that is already someone else."""
import cv2
import pytest

from face_perception.enrolment.stream import (
    EnrolmentSession,
    Frame,
    UnknownLearner,
    check_goal,
)
from face_perception.recognition import Recognizer
from face_perception.tracking.pipeline import TrackedFace
from test.ros_harness import fit_640x480


@pytest.fixture(scope="module")
def frames(photos, core_detector):
    out = {}
    for name in ("obama", "obama2", "biden"):
        image = fit_640x480(cv2.imread(str(photos / f"{name}.jpg")))
        out[name] = (image, core_detector.detect(image))
    return out


def frame(frames, who, at, track="7"):
    image, faces = frames[who]
    return Frame(image, faces, [TrackedFace(f, track) for f in faces], at)


@pytest.fixture(scope="module")
def recognizer(dlib_embedder, core_detector, enroll):
    return Recognizer(dlib_embedder, enroll([("biden", "biden.jpg")]), detector=core_detector)


def test_track_session_keeps_distinct_views_and_ends_after_its_frames(frames, recognizer):
    session = EnrolmentSession(check_goal("obama", "7", max_frames=4, max_samples=5), 0.0)
    for i, who in enumerate(("obama", "obama", "obama2")):
        session.observe(recognizer, frame(frames, who, i))
        assert not session.done and session.frames_seen == i + 1
    session.observe(recognizer, frame(frames, "biden", 3, track="8"))  # another track
    assert session.done
    outcome = session.finish(recognizer)
    assert outcome.ok, outcome.reason
    assert outcome.selection.candidates == 3 and len(outcome.selection.views) == 2
    assert outcome.selection.sources == ["track 7"] * 2


def test_largest_face_never_comes_from_a_stale_frame(frames, recognizer):
    goal = check_goal("obama", "", max_frames=3)
    stale = frame(frames, "biden", at=10.0)
    session = EnrolmentSession(goal, now=12.0)
    session.start(recognizer, stale, max_frame_age=1.0, now=12.0)
    assert not session.done and session.pool.seen == 0
    session.observe(recognizer, frame(frames, "obama", at=12.5))
    assert session.done
    outcome = session.finish(recognizer)
    assert outcome.ok and len(outcome.selection.views) == 1
    # A fresh frame is used at once.
    session = EnrolmentSession(goal, now=10.5)
    session.start(recognizer, stale, max_frame_age=1.0, now=10.5)
    assert session.done and session.frames_seen == 0


def test_face_already_enrolled_as_someone_else_is_refused_unless_allowed(frames, recognizer):
    for allow in (False, True):
        session = EnrolmentSession(check_goal("Joe", "", allow_duplicate=allow), 0.0)
        session.observe(recognizer, frame(frames, "biden", 0.0))
        outcome = session.finish(recognizer)
        if allow:
            assert outcome.ok
        else:
            assert outcome.matched[0] == "biden" and outcome.matched[1] > 0.99
            assert "already matches 'biden'" in outcome.reason
    # Adding samples to the same identity is no duplicate.
    session = EnrolmentSession(check_goal("biden", ""), 0.0)
    session.observe(recognizer, frame(frames, "biden", 0.0))
    assert session.finish(recognizer).ok


def test_track_holding_two_people_is_refused(frames, recognizer):
    session = EnrolmentSession(check_goal("obama", "7", max_frames=4), 0.0)
    for i, who in enumerate(("obama", "obama", "biden", "biden")):
        session.observe(recognizer, frame(frames, who, i))
    outcome = session.finish(recognizer)
    assert not outcome.ok and "two people" in outcome.reason


def test_cancel_abort_and_timeout_end_a_session_with_their_reason(frames, recognizer):
    goal = check_goal("obama", "7", max_frames=300, timeout_s=5.0)
    cancelled, aborted, timed = (EnrolmentSession(goal, 0.0) for _ in range(3))
    cancelled.cancel()
    aborted.abort("the node was deactivated")
    assert not timed.expire(4.9) and timed.expire(5.0) and not timed.expire(6.0)
    for session in (cancelled, aborted, timed):
        assert session.done
        session.observe(recognizer, frame(frames, "obama", 0.0))  # ignored once ended
        assert session.frames_seen == 0
    assert cancelled.finish(recognizer).reason == "cancelled"
    assert aborted.finish(recognizer).reason == "the node was deactivated"
    assert timed.finish(recognizer).reason == "only 0 of 300 frames arrived in 5 s"


def test_stranger_learner_enrols_a_track_once_after_enough_gated_views(frames, recognizer):
    learner = UnknownLearner(after=3, keep=5)
    ready = []
    for who in ("obama", "obama2", "obama", "obama2"):
        image, faces = frames[who]
        ready += learner.observe(recognizer, image, [TrackedFace(faces[0], "4")])
    assert len(ready) == 1 and len(ready[0].views) == 2
