"""``face_detector``: sensor_msgs/Image -> vision_msgs/Detection2DArray on ``faces/detections``.

A thin lifecycle node over face_perception.pipeline.FacePipeline without a recognizer (detector
from the parameters; with ``tracking``, track ids in ``Detection2D.id``); plumbing in frame_node.
"""
from __future__ import annotations

import copy
from typing import Any, Optional

from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from face_perception.detection.config import default_score_threshold
from face_perception.pipeline.build import build_detector, build_pipeline, score_threshold
from face_perception.ros.conversions import bgr_to_image, faces_to_detection_array, stamp_to_ns
from face_perception.ros.frame_node import FaceNodeBase
from face_perception.ros.params import DETECTOR, TRACKING_KEYS
from face_perception.ros.runner import run_nodes

OUTPUT_QOS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Detector settings read at every detect() call: changing them needs no new ONNX session.
TUNABLE = frozenset({"score_threshold", "nms_threshold", "target_size", "max_size", "scales",
                     "flip", "max_faces"})


class DetectorNode(FaceNodeBase):
    SPECS = DETECTOR

    def __init__(self, node_name: str = "face_detector", **kwargs):
        self.faces_published = 0
        self.det_pub = self.image_pub = None
        self.pipeline = None  # FacePipeline without recognizer (its detector: the model)
        super().__init__(node_name, **kwargs)
        self.pipeline = build_pipeline(self.values)

    def on_values_changed(self, changed: set[str]) -> None:
        super().on_values_changed(changed)
        if changed & TRACKING_KEYS:
            self.pipeline = build_pipeline(self.values)  # the worker takes it at its next frame

    def on_deactivate(self, state):
        result = super().on_deactivate(state)  # the worker has stopped
        self.pipeline.reset()  # tracks do not span an inactive period
        return result

    def check_values(self, values: dict[str, Any]) -> Optional[str]:
        if values["target_size"] > values["max_size"]:
            return (f"target_size ({values['target_size']}) must not exceed max_size "
                    f"({values['max_size']})")
        return None

    def build_model(self, values: dict[str, Any]):
        return build_detector(values)

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
                if key == "score_threshold":
                    value = score_threshold(value)
                    if value is None:
                        value = default_score_threshold(self.model.backbone)
                setattr(tuned, key, value)
            return tuned
        return None

    def describe_model(self) -> str:
        v = self.values
        family = "YuNet-n" if v["backbone"] == "yunet" else f"RetinaFace {v['backbone']}"
        score = self.model.score_threshold if self.model is not None else v["score_threshold"]
        return f"{family} ({v['backend']}/{self.devices_in_use}), score>={score}"

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
        pipeline = self.pipeline
        pipeline.anonymize = self.values["anonymize"]
        result = pipeline.process(image, stamp_to_ns(msg.header.stamp), detector=model)
        answer = faces_to_detection_array(result.faces, msg.header, track_ids=result.track_ids)
        self.faces_published += len(result.faces)
        self.processed(received_at)  # counted before the answer is out (get_stats readers)
        self.det_pub.publish(answer)
        if self.values["publish_annotated"] and self.image_pub.get_subscription_count() > 0:
            self.image_pub.publish(bgr_to_image(result.annotated(), msg.header))

    def diagnostic_values(self) -> dict[str, Any]:
        pipeline = self.pipeline
        return {"faces_published": self.faces_published,
                "active_tracks": pipeline.active_tracks if pipeline is not None else 0}


def main(args: Optional[list[str]] = None) -> int:
    return run_nodes([DetectorNode], args, prog="face_detector")


if __name__ == "__main__":
    raise SystemExit(main())
