"""face_hri_bridge over real DDS: face ids never repeat (cameras, bridges, restarts) and faces
whose upstream stopped are removed after ``face_timeout`` of ROS time.

Time is driven by the test: the bridge runs with ``use_sim_time`` and the test publishes
``/clock``, then waits for the event it expects (a /tracked message, a counter), never for time.
"""
from __future__ import annotations

import re
from functools import partial

from hri_msgs.msg import IdsList, IdsMatch
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from test.hri_frames import photo_face, send_frame
from test.proc import wait_for
from test.ros_harness import (
    answered,
    node_args,
    stamp_ns,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    wait_stat,
)
from test.test_hri_bridge import FACE_TOPICS, unadvertised

RELIABLE_IMAGES = ["-p", "qos_reliability:=reliable"]


def set_clock(ros, clock_pub, node: str, seconds: float, proc) -> None:
    """Publish /clock until the bridge's clock reads ``seconds`` (its stats say so)."""
    ns = round(seconds * 1e9)
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(ns, 10**9)

    def reached():
        clock_pub.publish(msg)  # idempotent: the clock subscription may be best effort
        return ros.stats(node)["now_ns"] == ns
    assert until(reached, 60, proc), proc.output()[-3000:]


def tracked_at(messages, stamp: int):
    """The ids of the /tracked message stamped ``stamp`` (None until it arrived)."""
    got = answered(messages, stamp)
    return list(got[-1].ids) if got else None


def test_faces_without_upstream_are_removed_after_face_timeout_and_cameras_never_share_ids(
        ros, photos, core_detector, tmp_path):
    image, box, landmarks = photo_face(photos, core_detector)
    ns = unique_ns("/hri_timeout")
    node = f"{ns}/face_hri_bridge"
    tracked = ros.listen(IdsList, "/humans/faces/tracked")
    matches = ros.listen(IdsMatch, "/humans/candidate_matches")
    clock_pub = ros.publisher(Clock, "/clock")
    image_pub = ros.publisher(Image, f"{ns}/image")
    faces_pub = ros.publisher(Detection2DArray, f"{ns}/faces/identities")
    bridge = start("face_hri_bridge", tmp_path, node_args(ns, extra=RELIABLE_IMAGES + [
        "-p", "use_sim_time:=true", "-p", "face_timeout:=0.5"]))
    try:
        assert wait_for_subscribers(image_pub) and wait_for_subscribers(faces_pub) and \
            wait_for_subscribers(clock_pub), bridge.output()
        assert ros.wait_matched("/humans/faces/tracked")
        frame = partial(send_frame, image_pub, faces_pub, image, box, landmarks)

        def frame_ids(stamp):
            assert wait_for(lambda: tracked_at(tracked, stamp) is not None, 60), \
                bridge.output()[-3000:]
            return tracked_at(tracked, stamp)

        set_clock(ros, clock_pub, node, 100.0, bridge)
        # Two cameras whose trackers both call their face "1": two faces, two ids.
        (a,) = frame_ids(frame(1, "left", [("1", "obama", 0.9)]))
        a_, b = frame_ids(frame(2, "right", [("1", "unknown", 0.0)]))
        assert a_ == a and b != a
        session = ros.stats(node)["session"]
        assert re.fullmatch(f"f{session}1", a) and re.fullmatch(f"f{session}2", b)

        # 0.4 s later the left camera still shows its face: same id, nothing removed yet.
        set_clock(ros, clock_pub, node, 100.4, bridge)
        assert frame_ids(frame(3, "left", [("1", "obama", 0.9)])) == [b, a]

        # The right camera stopped at 100.0: its face goes at 100.7 (> 0.5 s), the left's not.
        set_clock(ros, clock_pub, node, 100.7, bridge)
        assert wait_for(lambda: tracked_at(tracked, 100_700_000_000) == [a], 60)
        assert wait_for(partial(unadvertised, ros.node, b), 60)
        assert all(ros.node.count_publishers(f"/humans/faces/{a}/{t}") == 1
                   for t in FACE_TOPICS)
        # Then the left stops too: everything goes, and its person match is withdrawn.
        set_clock(ros, clock_pub, node, 101.0, bridge)
        assert wait_for(lambda: tracked_at(tracked, 101_000_000_000) == [], 60)
        assert wait_for(partial(unadvertised, ros.node, a), 60)
        stats = ros.stats(node)
        assert (stats["expired_faces"], stats["tracked"], stats["advertised"]) == (2, {}, [])
        assert wait_for(lambda: len(matches) == 3, 60)

        # The left tracker reuses track "1" after the timeout: a new face, a new id.
        (c,) = frame_ids(frame(4, "left", [("1", "obama", 0.9)]))
        assert c not in (a, b) and re.fullmatch(f"f{session}3", c)
        assert wait_for(lambda: len(matches) == 4, 60)
        assert bridge.alive(), bridge.output()
    finally:
        assert bridge.stop() in (0, -2), bridge.output()
    assert [(m.id1, m.id2, round(m.confidence, 3)) for m in matches] == [
        (a, "pobama", 0.9), (a, "pobama", 0.9), (a, "pobama", 0.0), (c, "pobama", 0.9)]
    # Every /tracked message, in order: frames and the two expiries.
    assert [(stamp_ns(m.header), list(m.ids)) for m in tracked] == [
        (1, [a]), (2, [a, b]), (3, [b, a]), (100_700_000_000, [a]), (101_000_000_000, []),
        (4, [c])]


def test_two_bridges_and_a_restart_never_share_a_face_id(ros, photos, core_detector, tmp_path):
    image, box, landmarks = photo_face(photos, core_detector)
    ids, sessions = [], []
    for run, name in enumerate(["/hri_a", "/hri_b", "/hri_a"]):  # /hri_a again: a restart
        ns = unique_ns(name)
        image_pub = ros.publisher(Image, f"{ns}/image")
        faces_pub = ros.publisher(Detection2DArray, f"{ns}/faces/identities")
        bridge = start("face_hri_bridge", tmp_path, node_args(ns, extra=RELIABLE_IMAGES + [
            "-p", "face_timeout:=3600.0"]), tag=f"_{run}")
        try:
            assert wait_for_subscribers(image_pub) and wait_for_subscribers(faces_pub), \
                bridge.output()
            # The same camera frame and the same track id for every bridge.
            send_frame(image_pub, faces_pub, image, box, landmarks, 5, "camera",
                       [("1", "unknown", 0.0)])
            stats = wait_stat(ros, f"{ns}/face_hri_bridge", "frames", 1, bridge)
            (fid,) = stats["tracked"]
            assert stats["tracked"][fid] == ["camera", "1"]
            ids.append(fid)
            sessions.append(stats["session"])
        finally:
            assert bridge.stop() in (0, -2), bridge.output()
            ros.node.destroy_publisher(image_pub)
            ros.node.destroy_publisher(faces_pub)
    assert len(set(ids)) == 3 and len(set(sessions)) == 3, (ids, sessions)
    assert all(fid == f"f{s}1" for fid, s in zip(ids, sessions))
