"""ROS messages <-> numpy and Face lists: pure functions, no node, no DDS.

Images: sensor_msgs/Image (bgr8, rgb8, bgra8, rgba8, mono8, mono16) and CompressedImage (jpeg,
png) -> BGR uint8. cv_bridge does the raw conversion where a ROS install provides it; otherwise
face_perception.messages.images does (same arrays, tested). Faces <-> vision_msgs/Detection2DArray
with the field mapping of face_perception.messages.face_fields (landmarks in ``Detection2D.id``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from face_perception.messages.face_fields import (
    box_to_center_size,
    center_size_to_box,
    identity_hypothesis,
    landmarks_from_field,
    landmarks_to_field,
)
from face_perception.messages.images import (
    ENCODINGS,
    ImageMessageError,
    UnsupportedEncodingError,
    bgr_to_compressed,
    bgr_to_raw,
    compressed_to_bgr,
    raw_to_bgr,
)
from face_perception.messages.stamps import stamp_to_ns
from face_perception.types import Category, Face

__all__ = [
    "ImageMessageError", "UnsupportedEncodingError", "image_to_bgr", "compressed_to_bgr_msg",
    "bgr_to_image", "bgr_to_compressed_image", "faces_to_detection_array",
    "identities_to_detection_array", "detection_array_to_faces", "label_info",
    "stamp_to_ns", "HAVE_CV_BRIDGE",
]

try:  # cv_bridge comes with a ROS install; the PyPI wheels have none.
    from cv_bridge import CvBridge
    _BRIDGE = CvBridge()
    HAVE_CV_BRIDGE = True
except ImportError:
    _BRIDGE = None
    HAVE_CV_BRIDGE = False


def image_to_bgr(msg: Image, use_cv_bridge: Optional[bool] = None) -> np.ndarray:
    """sensor_msgs/Image -> BGR uint8 HxWx3 (raises ImageMessageError / UnsupportedEncoding)."""
    use = HAVE_CV_BRIDGE if use_cv_bridge is None else use_cv_bridge
    enc = msg.encoding.strip().lower()
    if use and _BRIDGE is not None and enc in ENCODINGS and enc != "mono16":
        # Validate size first: cv_bridge raises generic errors on truncated data.
        raw_to_bgr(msg.height, msg.width, enc, msg.step, msg.data, msg.is_bigendian)
        return np.ascontiguousarray(_BRIDGE.imgmsg_to_cv2(msg, desired_encoding="bgr8"))
    return raw_to_bgr(msg.height, msg.width, msg.encoding, msg.step, msg.data,
                      msg.is_bigendian)


def compressed_to_bgr_msg(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> BGR uint8 HxWx3."""
    return compressed_to_bgr(msg.format, msg.data)


def bgr_to_image(image_bgr: np.ndarray, header) -> Image:
    """BGR uint8 array -> bgr8 sensor_msgs/Image with the given header."""
    fields = bgr_to_raw(image_bgr)
    msg = Image(header=header, height=fields["height"], width=fields["width"],
                encoding="bgr8", is_bigendian=fields["is_bigendian"], step=fields["step"])
    msg.data = fields["data"].tobytes()
    return msg


def bgr_to_compressed_image(image_bgr: np.ndarray, header, kind: str = "jpeg",
                            ) -> CompressedImage:
    fields = bgr_to_compressed(image_bgr, kind)
    msg = CompressedImage(header=header, format=fields["format"])
    msg.data = fields["data"].tobytes()
    return msg


def _detection(header, face: Face, class_id: str, score: float) -> Detection2D:
    det = Detection2D(header=header, id=landmarks_to_field(face.landmarks))
    cx, cy, w, h = box_to_center_size(face.box)
    det.bbox.center.position.x = cx
    det.bbox.center.position.y = cy
    det.bbox.size_x = w
    det.bbox.size_y = h
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = class_id
    hyp.hypothesis.score = float(score)
    det.results.append(hyp)
    return det


def faces_to_detection_array(faces: Sequence[Face], header, class_id: str = "face",
                             ) -> Detection2DArray:
    """Detector output: one Detection2D per face, results[0] = (class_id, detector score)."""
    return Detection2DArray(header=header,
                            detections=[_detection(header, f, class_id, f.score) for f in faces])


def identities_to_detection_array(faces: Sequence[Face],
                                  categories: Sequence[Optional[Category]], header,
                                  unknown: str = "unknown") -> Detection2DArray:
    """Recognizer output: results[0] = (identity or ``unknown``, similarity; 0 when unknown)."""
    if len(faces) != len(categories):
        raise ValueError(f"{len(faces)} faces but {len(categories)} identities")
    dets = [_detection(header, face, *identity_hypothesis(cat, unknown))
            for face, cat in zip(faces, categories)]
    return Detection2DArray(header=header, detections=dets)


def detection_array_to_faces(msg: Detection2DArray) -> list[Face]:
    """Detection2DArray (ours or any detector's) -> Faces; landmarks None where the id has none.

    Raises face_fields.DetectionFieldError for a box with negative size or malformed landmarks.
    """
    faces = []
    for det in msg.detections:
        box = center_size_to_box(det.bbox.center.position.x, det.bbox.center.position.y,
                                 det.bbox.size_x, det.bbox.size_y)
        score = det.results[0].hypothesis.score if det.results else 1.0
        faces.append(Face(box, score, landmarks_from_field(det.id)))
    return faces


def label_info(names: Sequence[str], header, threshold: float, unknown: str = "unknown",
               ) -> LabelInfo:
    """vision_msgs/LabelInfo: class 0 = ``unknown``, then the gallery identities in order."""
    msg = LabelInfo(header=header, threshold=float(threshold))
    for i, name in enumerate([unknown, *names]):
        msg.class_map.append(VisionClass(class_id=i, class_name=name))
    return msg

