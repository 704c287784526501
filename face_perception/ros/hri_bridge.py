"""``face_hri_bridge``: image + faces/identities -> the ROS4HRI (REP-155) face topics.

Pairs each image with its Detection2DArray (same header) and publishes ``/humans/faces/tracked``,
per face ``/humans/faces/<id>/{roi,cropped,aligned,landmarks}`` (advertised while the face is
tracked) and ``/humans/candidate_matches``. Face ids come from the detections' track ids; see
docs/hri.md for the id scheme, QoS and what is not implemented.
"""
from __future__ import annotations

from typing import Optional

from hri_msgs.msg import (
    FacialLandmarks,
    IdsList,
    IdsMatch,
    NormalizedPointOfInterest2D,
    NormalizedRegionOfInterest2D,
)
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

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
from face_perception.ros.pairing import StampPairer
from face_perception.ros.params import ParamSpec, declare
from face_perception.ros.runner import run_nodes

HUMANS = "/humans"  # REP-155: all topics under the global namespace /humans/
FACE_SUBTOPICS = ("roi", "cropped", "aligned", "landmarks")

PARAMS = (
    ParamSpec("face_width", hri.FACE_WIDTH, "Width of the /cropped and /aligned face images "
              "(REP-155 /humans/faces/width).", low=16, high=1024, runtime=False),
    ParamSpec("face_height", hri.FACE_HEIGHT, "Height of the /cropped and /aligned face images "
              "(REP-155 /humans/faces/height).", low=16, high=1024, runtime=False),
    ParamSpec("unknown_label", "unknown", "The recognizer's class id for an unknown face (no "
              "candidate match is published for it).", runtime=False),
    ParamSpec("qos_reliability", "best_effort", "Image subscription reliability: best_effort "
              "(camera drivers) or reliable (rosbag replay, tests).",
              choices=("best_effort", "reliable"), runtime=False),
    ParamSpec("pair_buffer_size", 10, "Unmatched images (and as many face arrays) kept while "
              "waiting for their partner.", low=1, high=1000, runtime=False),
)

# Per-face topics keep their last message for late subscribers: a consumer learns of a face from
# /tracked and subscribes afterwards, and still gets that face's current roi, crops, landmarks.
FACE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)
LIST_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10,
                      reliability=ReliabilityPolicy.RELIABLE)


class HriBridgeNode(Node):
    def __init__(self, **kwargs):
        super().__init__("face_hri_bridge", **kwargs)
        self.values = declare(self, PARAMS)
        self.size = (int(self.values["face_width"]), int(self.values["face_height"]))
        self.pairer = StampPairer(int(self.values["pair_buffer_size"]))
        self.tracked = hri.TrackedFaces()
        self.face_pubs: dict[str, dict[str, object]] = {}
        self.untracked_faces = 0  # faces without a track id: not published (docs/hri.md)
        self.bad_frames = 0
        image_qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=5,
            reliability=(ReliabilityPolicy.RELIABLE
                         if self.values["qos_reliability"] == "reliable"
                         else ReliabilityPolicy.BEST_EFFORT))
        self.tracked_pub = self.create_publisher(IdsList, f"{HUMANS}/faces/tracked", LIST_QOS)
        self.match_pub = self.create_publisher(IdsMatch, f"{HUMANS}/candidate_matches",
                                               LIST_QOS)
        self.create_subscription(Image, "image", self._on_image, image_qos)
        self.create_subscription(Detection2DArray, "faces/identities", self._on_faces, LIST_QOS)

    @staticmethod
    def _key(header):
        return stamp_to_ns(header.stamp), header.frame_id

    def _on_image(self, msg: Image) -> None:
        pair = self.pairer.add_image(self._key(msg.header), msg)
        if pair is not None:
            self._publish(*pair)

    def _on_faces(self, msg: Detection2DArray) -> None:
        pair = self.pairer.add_detections(self._key(msg.header), msg)
        if pair is not None:
            self._publish(*pair)

    def _faces(self, dets: Detection2DArray) -> list[tuple]:
        """(face id, box, landmarks, class id, score) of every detection with a track id."""
        out, seen = [], set()
        for det in dets.detections:
            track_id, landmarks = track_id_and_landmarks(det)
            if track_id is None:
                self.untracked_faces += 1
                self.get_logger().warning(
                    "faces without a track id are not published on /humans (enable tracking "
                    "in the detector or recognizer)", throttle_duration_sec=10.0)
                continue
            fid = hri.face_id(track_id)
            if fid in seen:
                raise DetectionFieldError(f"track id {track_id!r} appears twice in one frame")
            seen.add(fid)
            box = center_size_to_box(det.bbox.center.position.x, det.bbox.center.position.y,
                                     det.bbox.size_x, det.bbox.size_y)
            class_id, score = ((det.results[0].hypothesis.class_id,
                                det.results[0].hypothesis.score) if det.results else ("", 1.0))
            out.append((fid, box, landmarks, class_id, float(score)))
        return out

    def _person(self, class_id: str) -> Optional[str]:
        """The person a recognised face was named as; None for unknown or unrecognised faces."""
        if not class_id or class_id in ("face", self.values["unknown_label"]):
            return None
        return hri.person_id(class_id)

    def _publish(self, image_msg: Image, dets: Detection2DArray) -> None:
        try:
            faces = self._faces(dets)
            image = image_to_bgr(image_msg) if faces else None
        except (DetectionFieldError, ImageMessageError, UnsupportedEncodingError) as exc:
            self.bad_frames += 1
            self.get_logger().error(f"frame skipped: {exc}", throttle_duration_sec=5.0)
            return
        header = image_msg.header
        people = [self._person(cid) for _, _, _, cid, _ in faces]
        changes = self.tracked.update(
            [(fid, person, hri.match_confidence(score) if person else 0.0)
             for (fid, _, _, _, score), person in zip(faces, people)])
        for fid in changes.gone:
            for pub in self.face_pubs.pop(fid).values():
                self.destroy_publisher(pub)
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
        for fid, box, landmarks, class_id, score in faces:
            pubs = self.face_pubs[fid]
            xmin, ymin, xmax, ymax = hri.normalized_roi(box, width, height)
            # c: the detector's confidence where the input carries it (faces/detections); an
            # identities array carries the similarity instead, so 1.0 ("detected") there.
            c = score if class_id == "face" else 1.0
            pubs["roi"].publish(NormalizedRegionOfInterest2D(
                header=header, xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=float(c)))
            pubs["cropped"].publish(bgr_to_image(hri.cropped_face(image, box, *self.size),
                                                 header))
            if landmarks is not None:
                pubs["aligned"].publish(bgr_to_image(
                    hri.aligned_face(image, landmarks, *self.size), header))
                points = [NormalizedPointOfInterest2D(x=float(x), y=float(y), c=float(conf))
                          for x, y, conf in hri.facial_landmarks(landmarks, width, height)]
                pubs["landmarks"].publish(FacialLandmarks(header=header, landmarks=points,
                                                          height=height, width=width))
        for fid, person in changes.unmatched:
            self.match_pub.publish(self._match(fid, person, 0.0))
        for fid, person, confidence in changes.matches:
            self.match_pub.publish(self._match(fid, person, confidence))
        self.tracked_pub.publish(IdsList(header=header, ids=list(self.tracked.faces)))

    @staticmethod
    def _match(fid: str, person: str, confidence: float) -> IdsMatch:
        return IdsMatch(id1=fid, id1_type=IdsMatch.FACE, id2=person, id2_type=IdsMatch.PERSON,
                        confidence=float(confidence))

    def release(self) -> None:
        """Called by the runner before shutdown: per-face topics go with their faces."""
        for pubs in self.face_pubs.values():
            for pub in pubs.values():
                self.destroy_publisher(pub)
        self.face_pubs.clear()


def main(args: Optional[list[str]] = None) -> int:
    return run_nodes([HriBridgeNode], args, prog="face_hri_bridge")


if __name__ == "__main__":
    raise SystemExit(main())
