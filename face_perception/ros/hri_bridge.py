"""``face_hri_bridge``: image + faces/identities -> the ROS4HRI (REP-155) face topics and frames.

Pairs each image with its Detection2DArray (same header) and publishes ``/humans/faces/tracked``,
per face ``/humans/faces/<id>/{roi,cropped,aligned,landmarks}`` (advertised while the face is
tracked), ``/humans/candidate_matches`` and, with ``publish_tf``, the ``face_<id>`` and
``gaze_<id>`` frames on ``/tf`` from a head pose solved with ``camera_info``. Face ids are
unique per bridge start and camera; faces without upstream for ``face_timeout`` are removed.
See docs/hri.md for the id scheme, QoS, parameters and what is not implemented.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from geometry_msgs.msg import TransformStamped
from hri_msgs.msg import (
    FacialLandmarks,
    IdsList,
    IdsMatch,
    NormalizedPointOfInterest2D,
    NormalizedRegionOfInterest2D,
)
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from std_srvs.srv import Trigger
from tf2_msgs.msg import TFMessage
from vision_msgs.msg import Detection2DArray

from face_perception import head_pose
from face_perception.messages import hri
from face_perception.messages.face_fields import (
    DetectionFieldError,
    center_size_to_box,
    track_id_and_landmarks,
)
from face_perception.ros.conversions import (
    ImageMessageError,
    UnsupportedEncodingError,
    bgr_to_image,
    image_to_bgr,
    stamp_to_ns,
)
from face_perception.ros.frame_node import overridable_subscription
from face_perception.ros.pairing import StampPairer
from face_perception.ros.params import IMAGE_INPUT, ParamSpec, declare
from face_perception.ros.runner import run_nodes

HUMANS = "/humans"  # REP-155: all topics under the global namespace /humans/
FACE_SUBTOPICS = ("roi", "cropped", "aligned", "landmarks")
_NODE_INPUT = {s.name: s for s in IMAGE_INPUT}

PARAMS = (
    ParamSpec("face_width", hri.FACE_WIDTH, "Width of the /cropped and /aligned face images "
              "(REP-155 /humans/faces/width).", low=16, high=1024),
    ParamSpec("face_height", hri.FACE_HEIGHT, "Height of the /cropped and /aligned face images "
              "(REP-155 /humans/faces/height).", low=16, high=1024),
    ParamSpec("unknown_label", "unknown", "The recognizer's class id for an unknown face (no "
              "candidate match is published for it)."),
    # The image subscription's QoS: the same shorthands (and qos_overrides) as the nodes.
    _NODE_INPUT["qos_reliability"],
    _NODE_INPUT["qos_depth"],
    ParamSpec("pair_buffer_size", 10, "Unmatched images (and as many face arrays) kept while "
              "waiting for their partner; a change drops the ones waiting.", low=1, high=1000),
    ParamSpec("face_timeout", 1.0, "Seconds (ROS time: sim time under use_sim_time) without a "
              "frame showing a face after which it is removed: off /humans/faces/tracked, its "
              "topics unadvertised, its id retired. Covers an upstream that stopped.",
              low=0.01, high=3600.0),
    ParamSpec("publish_tf", False, "Publish face_<id> and gaze_<id> frames on /tf (head pose "
              "from the 5 landmarks and camera_info; parent = the image's frame_id)."),
)

# Per-face topics keep their last message for late subscribers: a consumer learns of a face from
# /tracked and subscribes afterwards, and still gets that face's current roi, crops, landmarks.
FACE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
LIST_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE)
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,  # as tf2's broadcaster
                    reliability=ReliabilityPolicy.RELIABLE)
INPUT_KEYS = frozenset({"qos_reliability", "qos_depth", "publish_tf"})


class HriBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("face_hri_bridge", **kwargs)
        self.specs = {s.name: s for s in PARAMS}
        self.values: dict[str, Any] = declare(self, PARAMS)
        self.pairer = StampPairer(int(self.values["pair_buffer_size"]))
        self.ids = hri.FaceIds()  # a fresh random session per start: ids never repeat
        self.tracked = hri.TrackedFaces()
        self.face_pubs: dict[str, dict[str, Any]] = {}
        self.camera_info: dict[str, CameraInfo] = {}  # frame_id -> newest CameraInfo
        self.counts = dict(frames=0, untracked_faces=0, bad_frames=0, failed_frames=0,
                           expired_faces=0, camera_infos=0, tf_frames=0, tf_no_camera_info=0,
                           tf_no_landmarks=0, tf_pose_failed=0)
        self._qos_declared: dict[str, dict[str, Any]] = {}
        self.image_qos_text = ""
        self._inputs: list = []
        self.tf_pub = None
        self.tracked_pub = self.create_publisher(IdsList, f"{HUMANS}/faces/tracked", LIST_QOS)
        self.match_pub = self.create_publisher(IdsMatch, f"{HUMANS}/candidate_matches",
                                               LIST_QOS)
        self.faces_sub = self.create_subscription(Detection2DArray, "faces/identities",
                                                  self._on_faces, LIST_QOS)
        self._create_inputs()
        self._expiry_timer = None
        self._make_expiry_timer()
        self.create_service(Trigger, "~/get_stats", self._on_get_stats)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(f"face ids of this start: f{self.ids.session}<n>")

    # ---- inputs ---------------------------------------------------------------------------
    def _create_inputs(self) -> None:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self.values["qos_depth"]),
                         reliability=(ReliabilityPolicy.RELIABLE
                                      if self.values["qos_reliability"] == "reliable"
                                      else ReliabilityPolicy.BEST_EFFORT))
        sub, self.image_qos_text = overridable_subscription(
            self, self._qos_declared, Image, "image", self._on_image, qos)
        self._inputs = [sub]
        if self.values["publish_tf"]:
            # camera_info comes with the image stream, with the image's QoS (a best-effort
            # reader matches both kinds of camera driver).
            self._inputs.append(self.create_subscription(CameraInfo, "camera_info",
                                                         self._on_camera_info, qos))
            self.tf_pub = self.tf_pub or self.create_publisher(TFMessage, "/tf", TF_QOS)
        elif self.tf_pub is not None:
            self.destroy_publisher(self.tf_pub)
            self.tf_pub = None
            self.camera_info.clear()

    def _destroy_inputs(self) -> None:
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs = []

    def _make_expiry_timer(self) -> None:
        if self._expiry_timer is not None:
            self.destroy_timer(self._expiry_timer)
        # The node's clock (ROS time): under use_sim_time /clock drives the expiry.
        period = min(max(self.values["face_timeout"] / 4, 0.01), 1.0)
        self._expiry_timer = self.create_timer(period, self._expire)

    def _now(self) -> float:
        return self.get_clock().now().nanoseconds / 1e9

    @staticmethod
    def _key(header):
        return stamp_to_ns(header.stamp), header.frame_id

    def _on_image(self, msg: Image) -> None:
        self._guarded(self.pairer.add_image(self._key(msg.header), msg))

    def _on_faces(self, msg: Detection2DArray) -> None:
        self._guarded(self.pairer.add_detections(self._key(msg.header), msg))

    def _guarded(self, pair) -> None:
        """Publish a paired frame; an unexpected failure costs that frame (counted, logged),
        never the node (an exception in a callback would end its spin)."""
        if pair is None:
            return
        try:
            self._publish(*pair)
        except Exception as exc:  # noqa: BLE001 - one frame must not stop the bridge
            self.counts["failed_frames"] += 1
            self.get_logger().error(f"frame failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=5.0)

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.counts["camera_infos"] += 1
        self.camera_info[msg.header.frame_id] = msg

    # ---- one frame ------------------------------------------------------------------------
    def _faces(self, dets: Detection2DArray, now: float) -> list[tuple]:
        """(face id, box, landmarks, class id, score) of every detection with a track id."""
        out, seen = [], set()
        source = dets.header.frame_id
        for det in dets.detections:
            track_id, landmarks = track_id_and_landmarks(det)
            if track_id is None:
                self.counts["untracked_faces"] += 1
                self.get_logger().warning(
                    "faces without a track id are not published on /humans (enable tracking "
                    "in the detector or recognizer)", throttle_duration_sec=10.0)
                continue
            if track_id in seen:
                raise DetectionFieldError(f"track id {track_id!r} appears twice in one frame")
            seen.add(track_id)
            box = center_size_to_box(det.bbox.center.position.x, det.bbox.center.position.y,
                                     det.bbox.size_x, det.bbox.size_y)
            class_id, score = ((det.results[0].hypothesis.class_id,
                                det.results[0].hypothesis.score) if det.results else ("", 1.0))
            out.append((track_id, box, landmarks, class_id, float(score)))
        # Ids only once the whole frame is valid: a refused frame issues none.
        return [(self.ids.face_id(source, t, now), *rest) for t, *rest in out]

    def _person(self, class_id: str) -> Optional[str]:
        """The person a recognised face was named as; None for unknown or unrecognised faces."""
        if not class_id or class_id in ("face", self.values["unknown_label"]):
            return None
        return hri.person_id(class_id)

    def _publish(self, image_msg: Image, dets: Detection2DArray) -> None:
        now = self._now()
        try:
            faces = self._faces(dets, now)
            image = image_to_bgr(image_msg) if faces else None
        except (DetectionFieldError, ImageMessageError, UnsupportedEncodingError) as exc:
            self.counts["bad_frames"] += 1
            self.get_logger().error(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        self.counts["frames"] += 1
        header = image_msg.header
        people = [self._person(cid) for _, _, _, cid, _ in faces]
        changes = self.tracked.update(
            [(fid, person, hri.match_confidence(score) if person else 0.0)
             for (fid, _, _, _, score), person in zip(faces, people)],
            source=header.frame_id, now=now)
        self._unadvertise(changes.gone)
        for fid in changes.appeared:
            self.face_pubs[fid] = {
                "roi": self.create_publisher(NormalizedRegionOfInterest2D,
                                             f"{HUMANS}/faces/{fid}/roi", FACE_QOS),
                "cropped": self.create_publisher(Image, f"{HUMANS}/faces/{fid}/cropped",
                                                 FACE_QOS),
                "aligned": self.create_publisher(Image, f"{HUMANS}/faces/{fid}/aligned",
                                                 FACE_QOS),
                "landmarks": self.create_publisher(FacialLandmarks,
                                                   f"{HUMANS}/faces/{fid}/landmarks", FACE_QOS),
            }
        width, height = image_msg.width, image_msg.height
        size = (int(self.values["face_width"]), int(self.values["face_height"]))
        for fid, box, landmarks, class_id, score in faces:
            pubs = self.face_pubs[fid]
            xmin, ymin, xmax, ymax = hri.normalized_roi(box, width, height)
            # c: the detector's confidence where the input carries it (faces/detections); an
            # identities array carries the similarity instead, so 1.0 ("detected") there.
            c = score if class_id == "face" else 1.0
            pubs["roi"].publish(NormalizedRegionOfInterest2D(
                header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=float(c)))
            pubs["cropped"].publish(bgr_to_image(hri.cropped_face(image, box, *size), header))
            if landmarks is not None:
                pubs["aligned"].publish(bgr_to_image(
                    hri.aligned_face(image, landmarks, *size), header))
                points = [NormalizedPointOfInterest2D(x=float(x), y=float(y), c=float(conf))
                          for x, y, conf in hri.facial_landmarks(landmarks, width, height)]
                pubs["landmarks"].publish(FacialLandmarks(header=header, landmarks=points,
                                                          height=height, width=width))
        if self.values["publish_tf"] and faces:
            self._publish_tf(image_msg, faces)
        self._publish_matches(changes)
        self.tracked_pub.publish(IdsList(header=header, ids=self.tracked.faces))

    def _publish_matches(self, changes: hri.FrameChanges) -> None:
        for fid, person in changes.unmatched:
            self.match_pub.publish(self._match(fid, person, 0.0))
        for fid, person, confidence in changes.matches:
            self.match_pub.publish(self._match(fid, person, confidence))

    def _unadvertise(self, faces) -> None:
        for fid in faces:
            for pub in self.face_pubs.pop(fid, {}).values():
                self.destroy_publisher(pub)

    # ---- TF -------------------------------------------------------------------------------
    def _intrinsics(self, image_msg: Image) -> Optional[head_pose.Intrinsics]:
        info = self.camera_info.get(image_msg.header.frame_id)
        if info is None:
            self.counts["tf_no_camera_info"] += 1
            self.get_logger().warning(
                f"no camera_info for frame {image_msg.header.frame_id!r} yet: no face TF "
                f"(remap camera_info to the camera's topic)", throttle_duration_sec=10.0)
            return None
        try:
            if (info.width, info.height) not in ((0, 0), (image_msg.width, image_msg.height)):
                raise head_pose.HeadPoseError(
                    f"camera_info is for {info.width}x{info.height} images, the image is "
                    f"{image_msg.width}x{image_msg.height}")
            return head_pose.Intrinsics.from_camera_info(info.k, info.d, info.distortion_model)
        except head_pose.HeadPoseError as exc:
            self.counts["tf_no_camera_info"] += 1
            self.get_logger().error(f"no face TF: {exc}", throttle_duration_sec=10.0)
            return None

    def _publish_tf(self, image_msg: Image, faces: list[tuple]) -> None:
        intrinsics = self._intrinsics(image_msg)
        if intrinsics is None:
            return
        transforms = []
        for fid, _, landmarks, _, _ in faces:
            if landmarks is None:
                self.counts["tf_no_landmarks"] += 1
                continue
            try:
                pose = head_pose.solve_head_pose(landmarks, intrinsics)
            except head_pose.HeadPoseError as exc:
                self.counts["tf_pose_failed"] += 1
                self.get_logger().warning(f"face {fid}: {exc}", throttle_duration_sec=10.0)
                continue
            transforms += [self._transform(image_msg.header, f"face_{fid}", pose.translation,
                                           pose.rotation),
                           self._transform(image_msg.header, f"gaze_{fid}", pose.translation,
                                           pose.gaze_rotation)]
        if transforms:
            self.tf_pub.publish(TFMessage(transforms=transforms))
            self.counts["tf_frames"] += len(transforms)

    @staticmethod
    def _transform(header, child: str, translation, rotation) -> TransformStamped:
        t = TransformStamped(header=header, child_frame_id=child)
        t.transform.translation.x, t.transform.translation.y, t.transform.translation.z = (
            float(v) for v in translation)
        q = t.transform.rotation
        q.x, q.y, q.z, q.w = head_pose.quaternion_xyzw(rotation)
        return t

    # ---- faces without upstream -----------------------------------------------------------
    def _expire(self) -> None:
        now, timeout = self._now(), float(self.values["face_timeout"])
        self.ids.expire(now, timeout)
        changes = self.tracked.expire(now, timeout)
        if not changes.gone:
            return
        self.counts["expired_faces"] += len(changes.gone)
        self.get_logger().info(f"faces {changes.gone} not seen for {timeout} s: removed")
        self._unadvertise(changes.gone)
        self._publish_matches(changes)
        msg = IdsList(ids=self.tracked.faces)
        msg.header.stamp = self.get_clock().now().to_msg()
        self.tracked_pub.publish(msg)

    # ---- parameters and statistics --------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        new = dict(self.values)
        for p in params:
            spec = self.specs.get(p.name)
            if spec is None:
                continue  # rclpy's own (use_sim_time, qos_overrides.* are read-only)
            reason = spec.check(p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            new[p.name] = spec.normalize(p.value)
        changed = {k for k in new if new[k] != self.values[k]}
        self.values = new
        if changed & INPUT_KEYS:
            self._destroy_inputs()
            self._create_inputs()
        if "pair_buffer_size" in changed:
            self.pairer = StampPairer(int(new["pair_buffer_size"]))
        if "face_timeout" in changed:
            self._make_expiry_timer()
        if changed:
            self.get_logger().info("parameters changed: " + ", ".join(
                f"{k}={new[k]!r}" for k in sorted(changed)))
        return SetParametersResult(successful=True)

    def stats(self) -> dict[str, Any]:
        pending_images, pending_dets = self.pairer.pending()
        return {"session": self.ids.session, **self.counts,
                "tracked": {fid: list(self.ids.track_of(fid) or ("", ""))
                            for fid in self.tracked.faces},
                "advertised": sorted(self.face_pubs), "image_qos": self.image_qos_text,
                "inputs": [s.topic_name for s in self._inputs],
                "unmatched_images": self.pairer.unmatched_images,
                "unmatched_detections": self.pairer.unmatched_detections,
                "pending_images": pending_images, "pending_detections": pending_dets,
                "now_ns": self.get_clock().now().nanoseconds, "values": self.values}

    def _on_get_stats(self, request, response):
        response.success, response.message = True, json.dumps(self.stats())
        return response

    @staticmethod
    def _match(fid: str, person: str, confidence: float) -> IdsMatch:
        return IdsMatch(id1=fid, id1_type=IdsMatch.FACE, id2=person, id2_type=IdsMatch.PERSON,
                        confidence=float(confidence))

    def release(self) -> None:
        """Called by the runner before shutdown: per-face topics go with their faces."""
        self._unadvertise(list(self.face_pubs))


def main(args: Optional[list[str]] = None) -> int:
    return run_nodes([HriBridgeNode], args, prog="face_hri_bridge")


if __name__ == "__main__":
    raise SystemExit(main())
