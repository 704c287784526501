"""face_hri_bridge over real DDS: a REP-155 consumer sees every face appear, keep its id, leave.

The bridge runs as its own process (installed entry point). The test publishes real frames made
from the photos with identities arrays written directly (track ids, names, landmarks found by the
real detector), one frame at a time: the next only after the consumer has everything the last one
must produce. The consumer is written from REP-155 alone: it reads /humans/faces/tracked and
subscribes to /humans/faces/<id>/{roi,cropped,aligned,landmarks} of the ids listed there,
dropping them when an id leaves the list, and reads /humans/candidate_matches.
"""
from __future__ import annotations

import re
import threading
from collections import defaultdict
from functools import partial

import numpy as np
import pytest
import rclpy
from hri_msgs.msg import FacialLandmarks, IdsList, IdsMatch, NormalizedRegionOfInterest2D
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from test.hri_frames import detection
from test.proc import wait_for
from test.ros_harness import (
    RELIABLE,
    image_msg,
    node_args,
    stamp_ns,
    start,
    unique_ns,
    wait_for_subscribers,
)
from test.tracking_scenes import Cutouts, background

FACE_TOPICS = {"roi": NormalizedRegionOfInterest2D, "cropped": Image, "aligned": Image,
               "landmarks": FacialLandmarks}
FACE_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)

# (person, centre x, centre y, face height, track id, class id, score) per frame. Obama leaves
# after frame 4 and comes back in frame 7 under a new track id; Biden's track id is not a ROS
# name token; in frame 6 Biden is detected without a track id.
SCENE = [
    [("obama", 200, 240, 150, "3", "obama", 0.95)],
    [("obama", 210, 240, 150, "3", "obama", 0.96)],
    [("obama", 220, 240, 150, "3", "obama", 0.95), ("biden", 470, 230, 140, "3f2a-9c",
                                                    "unknown", 0.0)],
    [("obama", 230, 240, 150, "3", "obama", 0.94), ("biden", 460, 230, 140, "3f2a-9c",
                                                    "unknown", 0.0)],
    [("obama", 240, 240, 150, "3", "obama", 0.95), ("biden", 450, 230, 140, "3f2a-9c",
                                                    "biden", 0.93)],
    [("biden", 440, 230, 140, "3f2a-9c", "biden", 0.92)],
    [("biden", 430, 230, 140, "", "biden", 0.92)],
    [("obama", 200, 240, 150, "11", "obama", 0.95)],
]
# The three faces, by name: their REP-155 ids are the bridge's (random per start), learnt from
# /humans/faces/tracked, which lists a frame's faces in the order of its detections.
O1, B, O2 = "obama, track 3", "biden, track 3f2a-9c", "obama again, track 11"
FACE_OF_TRACK = {"3": O1, "3f2a-9c": B, "11": O2}
TRACKED = [[O1], [O1], [O1, B], [O1, B], [O1, B], [B], [], [O2]]
MATCHES = [  # (face, person, confidence) in publishing order, per frame
    [(O1, "pobama", 0.95)], [(O1, "pobama", 0.96)], [(O1, "pobama", 0.95)],
    [(O1, "pobama", 0.94)], [(O1, "pobama", 0.95), (B, "pbiden", 0.93)],
    [(O1, "pobama", 0.0), (B, "pbiden", 0.92)], [(B, "pbiden", 0.0)], [(O2, "pobama", 0.95)],
]


class Rep155Consumer:
    """What an HRI stack does with REP-155 faces: follow /tracked, subscribe per face.

    It has its own node, spun by one thread: it makes and destroys subscriptions from its
    callbacks, which rclpy's multi-threaded executor does not survive reliably (ros2/rclpy#1206).
    """

    def __init__(self):
        self.node = rclpy.create_node("rep155_consumer")
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        node = self.node
        self.lock = threading.Lock()
        self.tracked: list[tuple[int, list[str]]] = []
        self.matches: list[tuple[str, int, str, int, float]] = []
        self.received: dict = defaultdict(lambda: defaultdict(list))  # face -> topic -> msgs
        self.subs: dict[str, list] = {}
        self.lists = [
            node.create_subscription(IdsList, "/humans/faces/tracked", self.on_tracked, RELIABLE),
            node.create_subscription(IdsMatch, "/humans/candidate_matches", self.on_match,
                                     RELIABLE)]

    def on_tracked(self, msg: IdsList) -> None:
        ids = list(msg.ids)
        for face in ids:
            if face not in self.subs:
                self.subs[face] = [
                    self.node.create_subscription(
                        msg_type, f"/humans/faces/{face}/{topic}",
                        lambda m, face=face, topic=topic: self.keep(face, topic, m), FACE_QOS)
                    for topic, msg_type in FACE_TOPICS.items()]
        for face in [f for f in self.subs if f not in ids]:
            for sub in self.subs.pop(face):
                self.node.destroy_subscription(sub)
        with self.lock:
            self.tracked.append((stamp_ns(msg.header), ids))

    def keep(self, face: str, topic: str, msg) -> None:
        with self.lock:
            self.received[face][topic].append(msg)

    def on_match(self, msg: IdsMatch) -> None:
        with self.lock:
            self.matches.append((msg.id1, msg.id1_type, msg.id2, msg.id2_type, msg.confidence))

    def spin(self) -> Rep155Consumer:
        threading.Thread(target=self.executor.spin, daemon=True).start()
        return self

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self.node.destroy_node()

    def state(self) -> str:
        """What it has, for a failure message."""
        with self.lock:
            return (f"tracked {self.tracked[-2:]}, {len(self.matches)} matches, subscribed "
                    f"{sorted(self.subs)}, received " + str(
                        {f: {t: [stamp_ns(m.header) for m in ms][-2:] for t, ms in topics.items()}
                         for f, topics in self.received.items()}))

    def has_frame(self, stamp: int, n_faces: int, n_matches: int) -> bool:
        with self.lock:
            if not self.tracked or self.tracked[-1][0] != stamp or len(self.matches) < n_matches:
                return False
            faces = self.tracked[-1][1]
            return len(faces) == n_faces and all(
                any(stamp_ns(m.header) == stamp for m in self.received[f][t])
                for f in faces for t in FACE_TOPICS)


def unadvertised(node, face: str) -> bool:
    return all(node.count_publishers(f"/humans/faces/{face}/{t}") == 0 for t in FACE_TOPICS)


def frames(photos, detector):
    """(image, [(box, landmarks, track id, class id, score)]) per SCENE frame; the boxes and
    landmarks are the real detector's on the composed frame."""
    from face_perception.tracking.association import iou_matrix

    cut = Cutouts(photos, detector)
    out = []
    for placements in SCENE:
        canvas = background("a").copy()
        truth = [cut.paste(canvas, p, cx, cy, fh) for p, cx, cy, fh, *_ in placements]
        found = detector.detect(canvas)
        assert len(found) == len(placements)
        ious = iou_matrix(np.array(truth), np.array([f.box for f in found]))
        faces = [(found[j].box, found[j].landmarks, *placement[4:])
                 for placement, j in zip(placements, ious.argmax(axis=1))]
        out.append((canvas, faces))
    return out


def test_rep155_consumer_sees_faces_appear_keep_their_ids_and_leave(ros, photos, core_detector,
                                                                     tmp_path):
    scene = frames(photos, core_detector)
    ns = unique_ns("/hri")
    consumer = Rep155Consumer().spin()
    image_pub = ros.publisher(Image, f"{ns}/image")
    faces_pub = ros.publisher(Detection2DArray, f"{ns}/faces/identities")
    bridge = start("face_hri_bridge", tmp_path,
                   node_args(ns, extra=["-p", "qos_reliability:=reliable",
                                        # lock step takes as long as it takes: no expiry here
                                        # (test_hri_lifetime.py tests it with sim time)
                                        "-p", "face_timeout:=3600.0"]))
    try:
        assert wait_for_subscribers(image_pub) and wait_for_subscribers(faces_pub), \
            bridge.output()
        assert wait_for(lambda: ros.node.count_publishers("/humans/faces/tracked") == 1, 60)
        # Its readers matched the bridge's writers (volatile: what is sent before is not seen).
        assert wait_for(lambda: all(s.get_publisher_count() == 1 for s in consumer.lists), 60)
        sent_matches, seen = 0, set()
        for i, (image, faces) in enumerate(scene):
            msg = image_msg(image, 1_000_000_000 + i * 33_000_000)
            faces_pub.publish(Detection2DArray(header=msg.header, detections=[
                detection(*face, msg.header) for face in faces]))
            image_pub.publish(msg)
            sent_matches += len(MATCHES[i])
            done = partial(consumer.has_frame, stamp_ns(msg.header), len(TRACKED[i]),
                           sent_matches)
            assert wait_for(done, 60), (i, consumer.state(), bridge.output())
            now = consumer.tracked[-1][1]
            for face in seen - set(now):
                # A face that left: its topics are no longer advertised.
                assert wait_for(partial(unadvertised, ros.node, face), 60), (i, face)
            for face in now:
                assert all(ros.node.count_publishers(f"/humans/faces/{face}/{t}") == 1
                           for t in FACE_TOPICS), (i, face)
            seen |= set(now)
        stats = ros.stats(f"{ns}/face_hri_bridge")
        assert bridge.alive(), bridge.output()
    finally:
        consumer.close()
        assert bridge.stop() in (0, -2), bridge.output()

    # The ids: one per face (a face that comes back under a new track is a new face), all of
    # this start's session, each a ROS name token.
    face_id = {}
    for (_, ids), names in zip(consumer.tracked, TRACKED):
        assert len(ids) == len(names)
        for fid, name in zip(ids, names):
            assert face_id.setdefault(name, fid) == fid, (name, fid, face_id)
    assert sorted(face_id) == sorted([O1, B, O2]) and len(set(face_id.values())) == 3
    assert all(re.fullmatch(f"f{stats['session']}[0-9a-z]+", f) for f in face_id.values())
    assert stats["untracked_faces"] == 1 and stats["bad_frames"] == 0
    assert stats["tracked"] == {face_id[O2]: ["camera", "11"]}

    stamps = [1_000_000_000 + i * 33_000_000 for i in range(len(SCENE))]
    # Every frame listed exactly once, in order; each face kept its id while it was in view.
    assert consumer.tracked == [(t, [face_id[n] for n in names])
                                for t, names in zip(stamps, TRACKED)]
    present = {face: [i for i, ids in enumerate(TRACKED) if face in ids] for face in (O1, B, O2)}
    assert present == {O1: [0, 1, 2, 3, 4], B: [2, 3, 4, 5], O2: [7]}
    for face, frames_in_view in present.items():
        for topic in FACE_TOPICS:
            got = [stamp_ns(m.header) for m in consumer.received[face_id[face]][topic]]
            assert got == [stamps[i] for i in frames_in_view], (face, topic)
    # Contents: normalised boxes and the five landmarks of the faces that were sent.
    for face, frames_in_view in present.items():
        for k, i in enumerate(frames_in_view):
            image, faces = scene[i]
            h, w = image.shape[:2]
            (box, landmarks, *_), = [f for f in faces if FACE_OF_TRACK.get(f[2]) == face]
            roi = consumer.received[face_id[face]]["roi"][k]
            np.testing.assert_allclose([roi.xmin, roi.ymin, roi.xmax, roi.ymax],
                                       np.clip(np.asarray(box) / [w, h, w, h], 0, 1),
                                       atol=1e-6)
            lm = consumer.received[face_id[face]]["landmarks"][k]
            assert (lm.width, lm.height, len(lm.landmarks)) == (w, h, 70)
            pts = np.array([[p.x, p.y, p.c] for p in lm.landmarks])
            np.testing.assert_allclose(pts[[68, 69, 30, 48, 54], :2], landmarks / [w, h],
                                       atol=1e-6)
            assert (pts[[68, 69, 30, 48, 54], 2] == 1).all() and pts[:, 2].sum() == 5
            for topic in ("cropped", "aligned"):
                img = consumer.received[face_id[face]][topic][k]
                assert (img.width, img.height, img.encoding) == (128, 128, "bgr8")
    # Candidate matches: named faces to their persons; 0.0 when a face left or changed person.
    want = [(face_id[f], IdsMatch.FACE, p, IdsMatch.PERSON, pytest.approx(c, abs=1e-6))
            for frame in MATCHES for f, p, c in frame]
    assert consumer.matches == want
