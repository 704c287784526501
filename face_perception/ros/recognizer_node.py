"""``face_recognizer``: image + faces/detections -> identities (vision_msgs/Detection2DArray).

Pairs each image with its detections by (stamp, frame_id) (ros/pairing.py PairedInputNode),
identifies the faces through the FacePipeline of its parameters (pipeline/build.py; one identity
per track: the detector's track ids in ``Detection2D.id`` while it sends them, else the node's
own tracker; every frame alone with ``tracking: false``; embeddings in one batched call per
frame), publishes ``faces/identities`` and a latched vision_msgs/LabelInfo on
``faces/label_info``. A gallery reload loads the new gallery first and only then swaps it in, so
the node is never without one. Enrolment (ros/enrolment_action.py): the ``~/enroll`` action (a
track's best distinct views over its next frames, or the largest face of a fresh frame;
feedback, cancel, bounds) and a non-waiting ``~/enroll`` service for the largest face. Gallery
services (ros/gallery_services.py): ``~/reload_gallery`` and a reload when the file changes,
``~/forget``, ``~/list_identities``; changes are saved to the gallery file (a segment) and
reloaded. Optionally strangers are learnt as ``anon_<n>``.
"""
from __future__ import annotations

import threading
from typing import Any, Optional

from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Detection2DArray, LabelInfo

from face_perception.pipeline.build import RecognitionSetup, build_pipeline, build_recognizer
from face_perception.ros.conversions import (
    LabelNumbering,
    bgr_to_image,
    detection_array_to_faces,
    detection_track_ids,
    identities_to_detection_array,
    label_info,
    stamp_to_ns,
)
from face_perception.ros.enrolment_action import EnrolmentServer
from face_perception.ros.frame_node import LOG_EVERY_S
from face_perception.ros.gallery_services import GalleryServices
from face_perception.ros.pairing import PairedInputNode
from face_perception.ros.params import (
    GALLERY_RULE_KEYS,
    IDENTITY_KEYS,
    RECOGNIZER,
    TRACKING_KEYS,
    gallery_file_problem,
)
from face_perception.ros.runner import run_nodes

OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED_QOS = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


class RecognizerNode(PairedInputNode):
    SPECS = RECOGNIZER
    # Parameters whose change needs a new embedder and detector.
    MODEL_KEYS = frozenset(s.name for s in RECOGNIZER if s.reload)

    def __init__(self, node_name: str = "face_recognizer", **kwargs):
        self.identified = 0
        self.unknown = 0
        self.id_pub = self.image_pub = self.label_pub = None
        self.gallery_services = GalleryServices(self)
        self.enrolment = EnrolmentServer(self, self.gallery_services)
        self._swap_lock = threading.Lock()
        self.labels = LabelNumbering()  # class numbers stay put while the node runs
        self.pipeline = None
        super().__init__(node_name, **kwargs)
        self.pipeline = build_pipeline(self.values)

    # ---- model ----------------------------------------------------------------------------
    def build_model(self, values: dict[str, Any], reuse: Optional[RecognitionSetup] = None,
                    strict: bool = False):
        # Not strict at configure: an unusable gallery must not keep the node from running.
        setup = build_recognizer(values, *(reuse.embedder, reuse.detector) if reuse else (),
                                 strict=strict)
        if setup.gallery_note:
            log = self.get_logger().error if "not usable" in setup.gallery_note \
                else self.get_logger().warning
            log(f"{setup.gallery_note}: every face will be '{values['unknown_label']}'")
        return setup

    def check_values(self, values: dict[str, Any]) -> Optional[str]:
        return gallery_file_problem(values["gallery_path"], values["create_gallery"])

    def describe_model(self) -> str:
        setup: RecognitionSetup = self.model
        if setup is None:
            return ""
        return (f"{self.values['model']} ({self.values['backend']}/{self.devices_in_use}), "
                f"open-set rule {setup.recognizer.rule} from the {setup.recognizer.rule_source}, "
                f"{len(setup.names)} identities")

    def prepare_model(self, values: dict[str, Any], changed: set[str]):
        # A new gallery or threshold reuses the loaded embedder and detector.
        if changed & self.MODEL_KEYS:
            return self.build_model(values, strict=True)
        if changed & GALLERY_RULE_KEYS:
            return self.build_model(values, reuse=self.model, strict=True)
        return None

    def reload_gallery(self) -> tuple[bool, str]:
        """Load the gallery file again; on failure keep the current one. (ok, message)."""
        current: RecognitionSetup = self.model
        if current is None:
            return False, f"node is {self.state}: configure it first"
        try:
            setup = build_recognizer(self.values, current.embedder, current.detector)
        except Exception as exc:  # noqa: BLE001 - reported to the caller, old gallery kept
            msg = f"gallery reload failed, keeping {len(current.names)} identities: {exc}"
            self.get_logger().error(msg)
            return False, msg
        with self._swap_lock:
            self.model = setup
        self.publish_label_info()
        text = setup.gallery_note or f"loaded {len(setup.names)} identities from " \
            f"{setup.gallery_path}"
        self.reloads += 1
        self.get_logger().info(f"gallery reloaded: {text}")
        return True, text

    # ---- outputs --------------------------------------------------------------------------
    def create_outputs(self) -> None:
        self.id_pub = self.create_lifecycle_publisher(Detection2DArray, "faces/identities",
                                                      OUTPUT_QOS)
        self.image_pub = self.create_lifecycle_publisher(Image, "faces/identities/image",
                                                         QoSProfile(depth=2))
        self.label_pub = self.create_lifecycle_publisher(LabelInfo, "faces/label_info",
                                                         LATCHED_QOS)
        self.gallery_services.create()
        self.enrolment.create()

    def destroy_outputs(self) -> None:
        for pub in (self.id_pub, self.image_pub, self.label_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.enrolment.destroy()
        self.gallery_services.destroy()
        self.id_pub = self.image_pub = self.label_pub = None

    def on_activate(self, state):
        result = super().on_activate(state)
        self.publish_label_info()  # publishers are enabled now; latched for late joiners
        return result

    def on_deactivate(self, state):
        result = super().on_deactivate(state)  # the worker has stopped, pairs are dropped
        self.enrolment.abort_all("the node was deactivated")
        self.pipeline.reset()  # tracks and their identities do not span an inactive period
        return result

    def publish_label_info(self) -> None:
        if self.label_pub is None or self.state != "active" or self.model is None:
            return
        hdr = Header()
        hdr.stamp = self.get_clock().now().to_msg()
        self.label_pub.publish(label_info(self.model.names, hdr,
                                          self.model.recognizer.threshold,
                                          self.values["unknown_label"], self.labels))

    def on_values_changed(self, changed: set[str]) -> None:
        super().on_values_changed(changed)
        if "gallery_poll_period" in changed and self.state in ("inactive", "active"):
            self.gallery_services.restart_poll()
        if changed & (self.MODEL_KEYS | GALLERY_RULE_KEYS):
            self.publish_label_info()
        if changed & (TRACKING_KEYS | IDENTITY_KEYS):
            self.pipeline = build_pipeline(self.values)  # taken at the next frame

    # ---- work -----------------------------------------------------------------------------
    def process(self, item, setup: RecognitionSetup) -> None:
        (img_msg, received_at), det_msg = item
        faces = detection_array_to_faces(det_msg)
        unknown = self.values["unknown_label"]
        draw = self.values["publish_annotated"] and self.image_pub.get_subscription_count() > 0
        # Pixels are only needed for faces or a drawing: an empty frame skips the decode.
        image = self.decode(img_msg) if faces or draw else None
        if faces and (setup.gallery is None or len(setup.gallery) == 0):
            # Nobody to recognise (the pipeline skips the embedder): say why now and then.
            self.get_logger().warning(f"{setup.gallery_note}: faces published as '{unknown}'",
                                      throttle_duration_sec=LOG_EVERY_S * 6)
        pipeline = self.pipeline
        pipeline.set_recognizer(setup.recognizer)  # a new gallery starts identities again
        pipeline.anonymize = self.values["anonymize"]
        result = pipeline.process_received(image, faces, stamp_to_ns(img_msg.header.stamp),
                                           detection_track_ids(det_msg))
        # The enrolment sessions and the stranger learner see every processed frame.
        self.enrolment.observe(setup, image, faces, result.tracked)
        self.gallery_services.learn(setup, image, result.tracked)
        cats = [t.category for t in result.tracked]
        answer = identities_to_detection_array(faces, cats, img_msg.header, unknown,
                                               track_ids=result.track_ids)
        known = result.named
        self.identified += known
        self.unknown += len(cats) - known
        self.processed(received_at)  # counted before the answer is out (get_stats readers)
        self.id_pub.publish(answer)
        if draw:
            self.image_pub.publish(bgr_to_image(result.annotated(unknown), img_msg.header))

    def diagnostic_values(self) -> dict[str, Any]:
        setup: Optional[RecognitionSetup] = self.model
        pipeline = self.pipeline
        return {"identities": len(setup.names) if setup else 0,
                "gallery": setup.gallery_path if setup else "",
                "gallery_note": setup.gallery_note if setup else "",
                "faces_identified": self.identified, "faces_unknown": self.unknown,
                "active_tracks": pipeline.active_tracks if pipeline else 0,
                "track_ids": "upstream" if pipeline and pipeline.upstream else (
                    "own" if self.values["tracking"] else "none"),
                "embeddings": pipeline.embeddings if pipeline else 0,
                "learnt_identities": self.gallery_services.learnt,
                "enroll_sessions": self.enrolment.pending,
                **{f"enroll_{k}": v for k, v in self.enrolment.finished.items()},
                **super().diagnostic_values()}


def main(args: Optional[list[str]] = None) -> int:
    # Multi-threaded: gallery services and the enrolment action answer beside the frame
    # callbacks (no callback of theirs waits for frames).
    return run_nodes([RecognizerNode], args, multithreaded=True, prog="face_recognizer")


if __name__ == "__main__":
    raise SystemExit(main())

