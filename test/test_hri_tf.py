"""face_hri_bridge's REP-155 frames over real DDS: with ``publish_tf`` a /tf consumer gets
``face_<id>`` and ``gaze_<id>`` for a real photo's face, parented to the image's frame, at the
head pose its 5 landmarks and the camera_info intrinsics give; frames without usable intrinsics
get none (counted)."""
from __future__ import annotations

import numpy as np
import pytest
from hri_msgs.msg import IdsList
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from face_perception import head_pose as hp
from test.hri_frames import photo_face, send_frame
from test.ros_harness import (
    answered,
    node_args,
    set_params,
    stamp_ns,
    start,
    unique_ns,
    until,
    wait_for_subscribers,
    wait_stat,
)

TF_QOS = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


def camera_info(frame_id: str, width: int, height: int, f: float) -> CameraInfo:
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5,
                      k=[f, 0.0, (width - 1) / 2, 0.0, f, (height - 1) / 2, 0.0, 0.0, 1.0])
    info.header.frame_id = frame_id
    return info


def tf_at(messages, stamp: int) -> list:
    return [t for m in list(messages) for t in m.transforms if stamp_ns(t.header) == stamp]


def pose_of(t) -> tuple[np.ndarray, np.ndarray]:
    tr, q = t.transform.translation, t.transform.rotation
    return np.array([tr.x, tr.y, tr.z]), hp.rotation_from_quaternion(q.x, q.y, q.z, q.w)


def test_face_and_gaze_frames_reach_a_tf_consumer_from_camera_info_and_landmarks(
        ros, photos, core_detector, tmp_path):
    image, box, landmarks = photo_face(photos, core_detector, width=320)
    h, w = image.shape[:2]
    f = 300.0  # a 56 degree horizontal field of view at 320 px
    ns = unique_ns("/hri_tf")
    node = f"{ns}/face_hri_bridge"
    tf = ros.listen(TFMessage, "/tf", TF_QOS)
    tracked = ros.listen(IdsList, "/humans/faces/tracked")
    info_pub = ros.publisher(CameraInfo, f"{ns}/camera_info")
    image_pub = ros.publisher(Image, f"{ns}/image")
    faces_pub = ros.publisher(Detection2DArray, f"{ns}/faces/identities")
    bridge = start("face_hri_bridge", tmp_path, node_args(ns, extra=[
        "-p", "qos_reliability:=reliable", "-p", "publish_tf:=true",
        "-p", "face_timeout:=3600.0"]))  # no expiry while the test takes its time

    def frame(stamp, frame_id="camera"):
        send_frame(image_pub, faces_pub, image, box, landmarks, stamp, frame_id,
                   [("4", "obama", 0.9)])
        assert until(lambda: answered(tracked, stamp), 60, bridge), bridge.output()[-3000:]
        return list(answered(tracked, stamp)[0].ids)

    def intrinsics(info, count):
        info_pub.publish(info)
        wait_stat(ros, node, "camera_infos", count, bridge)

    try:
        assert wait_for_subscribers(image_pub) and wait_for_subscribers(faces_pub) and \
            wait_for_subscribers(info_pub), bridge.output()
        assert ros.wait_matched("/tf")
        intrinsics(camera_info("camera", w, h, f), 1)
        (fid,) = frame(7)
        assert until(lambda: len(tf_at(tf, 7)) == 2, 60, bridge), bridge.output()[-3000:]
        face, gaze = sorted(tf_at(tf, 7), key=lambda t: t.child_frame_id)
        assert (face.child_frame_id, gaze.child_frame_id) == (f"face_{fid}", f"gaze_{fid}")
        assert face.header.frame_id == gaze.header.frame_id == "camera"
        (t, r), (tg, rg) = pose_of(face), pose_of(gaze)
        # In front of the camera, at the distance 63 mm between the eyes gives at this size.
        eye_px = float(np.linalg.norm(landmarks[1] - landmarks[0]))
        assert t[2] > 0 and 0.3 < np.linalg.norm(t) < 3.0
        assert np.linalg.norm(t) == pytest.approx(f * hp.INTERPUPILLARY_M / eye_px, rel=0.15)
        # Exactly the pose of these landmarks and intrinsics; the face looks toward the camera.
        want = hp.solve_head_pose(landmarks, hp.Intrinsics.from_camera_info(
            camera_info("camera", w, h, f).k, [0.0] * 5))
        np.testing.assert_allclose(t, want.translation, atol=1e-9)
        np.testing.assert_allclose(r, want.rotation, atol=1e-9)
        assert hp.frontal_angle_deg(hp.HeadPose(r, t)) < 45
        # gaze_<id>: collocated; z along the face's x, y down (-z of the face).
        np.testing.assert_allclose(tg, t, atol=0)
        np.testing.assert_allclose(rg[:, 2], r[:, 0], atol=1e-9)
        np.testing.assert_allclose(rg[:, 1], -r[:, 2], atol=1e-9)

        # The mirrored photo with its mirrored landmarks (left and right swap places in our
        # order): the head turns the other way, exactly (x mirrored in the camera, y in the face).
        mirrored = landmarks[[1, 0, 2, 4, 3]] * [-1, 1] + [w - 1, 0]
        send_frame(image_pub, faces_pub, image[:, ::-1].copy(), box, mirrored, 8, "camera",
                   [("5", "obama", 0.9)])
        assert until(lambda: len(tf_at(tf, 8)) == 2, 60, bridge), bridge.output()[-3000:]
        (fid5,) = answered(tracked, 8)[0].ids
        (turned,) = [x for x in tf_at(tf, 8) if x.child_frame_id == f"face_{fid5}"]
        t5, r5 = pose_of(turned)
        flip_cam, flip_face = np.diag([-1.0, 1, 1]), np.diag([1.0, -1, 1])
        np.testing.assert_allclose(r5, flip_cam @ r @ flip_face, atol=2e-3)
        np.testing.assert_allclose(t5, flip_cam @ t, atol=2e-4)
        assert r5[0, 0] * r[0, 0] <= 0  # the forward axis crosses the image the other way

        # A camera without camera_info, then intrinsics for another image size: no frames, the
        # faces still published on /humans, each refusal counted.
        assert len(frame(18, "other_camera")) == 2
        wait_stat(ros, node, "tf_no_camera_info", 1, bridge)
        intrinsics(camera_info("camera", 2 * w, 2 * h, f), 2)
        assert fid in frame(19)
        wait_stat(ros, node, "tf_no_camera_info", 2, bridge)
        intrinsics(camera_info("camera", w, h, f), 3)
        frame(20)
        assert until(lambda: len(tf_at(tf, 20)) == 2, 60, bridge)
        # /tf is one reliable writer: what came before stamp 20 has arrived.
        assert sorted({stamp_ns(t.header) for m in tf for t in m.transforms}) == [7, 8, 20]

        # publish_tf off at run time: /tf unadvertised, camera_info unsubscribed.
        assert set_params(ros, node, publish_tf=False)[0].successful
        assert until(lambda: ros.node.count_publishers("/tf") == 0
                     and info_pub.get_subscription_count() == 0, 60, bridge)
        stats = ros.stats(node)
        assert (stats["tf_frames"], stats["tf_pose_failed"], stats["bad_frames"]) == (6, 0, 0)
        assert bridge.alive(), bridge.output()
    finally:
        assert bridge.stop() in (0, -2), bridge.output()
