"""``face_detector``: sensor_msgs/Image -> vision_msgs/Detection2DArray on ``faces/detections``.

A thin lifecycle node over face_perception.detection.Detector and, with ``tracking``, a
face_perception.tracking.TrackingPipeline (track ids in ``Detection2D.id``); plumbing in
frame_node.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from face_perception.anonymize import anonymize
from face_perception.draw import draw_faces
from face_perception.ros.conversions import bgr_to_image, faces_to_detection_array, stamp_to_ns
from face_perception.ros.frame_node import FaceNodeBase
from face_perception.ros.params import DETECTOR, TRACKING_KEYS
from face_perception.ros.runner import run_nodes

OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Detector settings read at every detect() call: changing them needs no new ONNX session.
TUNABLE = frozenset({"score_threshold", "nms_threshold", "target_size", "max_size", "scales",
                     "flip", "max_faces"})


def detector_from_values(values: dict[str, Any]):
    """A Detector built from the node's parameter values (also used by the recognizer)."""
    from face_perception.detection import Detector
    from face_perception.onnx_session import usable_cores

    scales = [float(s) for s in values.get("scales", [1.0])]
    return Detector(
        backbone=values.get("backbone", "mnet"), backend=values["backend"],
        device=values["device"], model_path=values.get("model_path") or None,
        score_threshold=values.get("score_threshold", 0.5),
        nms_threshold=values.get("nms_threshold", 0.4),
        target_size=values.get("target_size", 640), max_size=values.get("max_size", 640),
        scales=None if scales == [1.0] else scales, flip=values.get("flip", False),
        max_faces=values.get("max_faces", 0),
        num_threads=values.get("num_threads") or usable_cores(),
        calibration=values.get("calibration") or None)


def tracker_from_values(values: dict[str, Any]):
    """A FaceTracker from the ``track_*`` parameters, or None when ``tracking`` is off (both
    nodes)."""
    from face_perception.tracking import FaceTracker, TrackerConfig

    if not values["tracking"]:
        return None
    return FaceTracker(TrackerConfig(
        high_score=values["track_high_score"], new_track_score=values["track_new_score"],
        match_iou=values["track_match_iou"], low_match_iou=values["track_low_match_iou"],
        confirm_hits=values["track_confirm_hits"], max_age=values["track_max_age"],
        scene_cut=values["track_scene_cut"] or None))


class DetectorNode(FaceNodeBase):
    SPECS = DETECTOR

    def __init__(self, node_name: str = "face_detector", **kwargs):
        self.faces_published = 0
        self.det_pub = self.image_pub = None
        self.pipeline = None  # TrackingPipeline without recognizer; None: tracking off
        super().__init__(node_name, **kwargs)
        self.pipeline = self._make_pipeline()

    def _make_pipeline(self):
        from face_perception.tracking import TrackingPipeline

        tracker = tracker_from_values(self.values)
        return TrackingPipeline(None, tracker) if tracker is not None else None

    def on_values_changed(self, changed: set[str]) -> None:
        super().on_values_changed(changed)
        if changed & TRACKING_KEYS:
            self.pipeline = self._make_pipeline()  # the worker takes it at its next frame

    def on_deactivate(self, state):
        result = super().on_deactivate(state)  # the worker has stopped
        if self.pipeline is not None:
            self.pipeline.reset()  # tracks do not span an inactive period
        return result

    def check_values(self, values: dict[str, Any]) -> Optional[str]:
        if values["target_size"] > values["max_size"]:
            return (f"target_size ({values['target_size']}) must not exceed max_size "
                    f"({values['max_size']})")
        return None

    def build_model(self, values: dict[str, Any]):
        return detector_from_values(values)

    def prepare_model(self, values: dict[str, Any], changed: set[str]):
        if any(self.specs[k].reload for k in changed):
            return self.build_model(values)
        if changed & TUNABLE and self.model is not None:
            # A tuned copy sharing the loaded session; the worker swaps to it between frames.
            tuned = copy.copy(self.model)
            for key in changed & TUNABLE:
                value = values[key]
                if key == "scales":
                    value = [float(v) for v in value]
                setattr(tuned, key, value)
            return tuned
        return None

    def describe_model(self) -> str:
        v = self.values
        family = "YuNet-n" if v["backbone"] == "yunet" else f"RetinaFace {v['backbone']}"
        return (f"{family} ({v['backend']}/{v['device']}), "
                f"score>={v['score_threshold']}")

    def create_outputs(self) -> None:
        self.det_pub = self.create_lifecycle_publisher(Detection2DArray, "faces/detections",
                                                       OUTPUT_QOS)
        self.image_pub = self.create_lifecycle_publisher(Image, "faces/detections/image",
                                                         QoSProfile(depth=2))

    def destroy_outputs(self) -> None:
        for pub in (self.det_pub, self.image_pub):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        self.det_pub = self.image_pub = None

    def process(self, item, model) -> None:
        msg, received_at = item
        image = self.decode(msg)
        faces = model.detect(image)
        pipeline = self.pipeline
        tracked = pipeline.update(image, faces, stamp_to_ns(msg.header.stamp)) \
            if pipeline is not None else None
        ids = [t.track_id for t in tracked] if tracked is not None else None
        answer = faces_to_detection_array(faces, msg.header, track_ids=ids)
        self.faces_published += len(faces)
        self.processed(received_at)  # counted before the answer is out (get_stats readers)
        self.det_pub.publish(answer)
        if self.values["publish_annotated"] and self.image_pub.get_subscription_count() > 0:
            labels = [t.label(identities=False) for t in tracked] if tracked else None
            shown = anonymize(image, faces, None, self.values["anonymize"])
            self.image_pub.publish(bgr_to_image(draw_faces(shown, faces, labels=labels),
                                                msg.header))

    def diagnostic_values(self) -> dict[str, Any]:
        pipeline = self.pipeline
        return {"faces_published": self.faces_published,
                "active_tracks": pipeline.active_tracks if pipeline is not None else 0}


def main(args: Optional[list[str]] = None) -> int:
    return run_nodes([DetectorNode], args, prog="face_detector")


if __name__ == "__main__":
    raise SystemExit(main())
