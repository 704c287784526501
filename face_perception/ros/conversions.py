"""ROS messages <-> numpy and Face lists: pure functions, no node, no DDS.

Images: sensor_msgs/Image (face_perception.messages.images.ENCODINGS) and CompressedImage (jpeg,
png) -> BGR uint8. cv_bridge converts the 8-bit RGB/grey encodings where a ROS install provides
it; face_perception.messages.images does the rest, and all of them without cv_bridge.
Faces <-> vision_msgs/Detection2DArray with the field mapping of
face_perception.messages.face_fields (track id in ``Detection2D.id``, landmarks in
``results[1..5]``).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_msgs.msg import (
    Detection2D,
    Detection2DArray,
    LabelInfo,
    ObjectHypothesisWithPose,
    VisionClass,
)

from face_perception.messages.face_fields import (
    LANDMARK_SCORE,
    box_to_center_size,
    center_size_to_box,
    identity_hypothesis,
    landmark_hypotheses,
    landmarks_from_hypotheses,
    landmarks_from_legacy_id,
    track_id_from_field,
    track_id_to_field,
)
from face_perception.messages.images import (
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
    "identities_to_detection_array", "detection_array_to_faces", "detection_track_ids",
    "label_info", "LabelNumbering", "label_version",
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
    if use and _BRIDGE is not None and enc in ("bgr8", "rgb8", "bgra8", "rgba8", "mono8"):
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


def _hypothesis(class_id: str, score: float, x: float = 0.0, y: float = 0.0,
                ) -> ObjectHypothesisWithPose:
    hyp = ObjectHypothesisWithPose()
    hyp.hypothesis.class_id = class_id
    hyp.hypothesis.score = float(score)
    hyp.pose.pose.position.x = x
    hyp.pose.pose.position.y = y
    return hyp


def _detection(header, face: Face, class_id: str, score: float,
               track_id: Optional[str] = None) -> Detection2D:
    det = Detection2D(header=header, id=track_id_to_field(track_id))
    cx, cy, w, h = box_to_center_size(face.box)
    det.bbox.center.position.x = cx
    det.bbox.center.position.y = cy
    det.bbox.size_x = w
    det.bbox.size_y = h
    det.results.append(_hypothesis(class_id, score))
    det.results.extend(_hypothesis(cid, LANDMARK_SCORE, x, y)
                       for cid, x, y in landmark_hypotheses(face.landmarks))
    return det


def _ids(track_ids, n: int) -> list:
    if track_ids is None:
        return [None] * n
    if len(track_ids) != n:
        raise ValueError(f"{n} faces but {len(track_ids)} track ids")
    return list(track_ids)


def faces_to_detection_array(faces: Sequence[Face], header, class_id: str = "face",
                             track_ids: Optional[Sequence[Optional[str]]] = None,
                             ) -> Detection2DArray:
    """Detector output: one Detection2D per face, results[0] = (class_id, detector score),
    results[1..5] the landmarks, id = the face's track id (None or absent: '')."""
    ids = _ids(track_ids, len(faces))
    return Detection2DArray(header=header, detections=[
        _detection(header, f, class_id, f.score, t) for f, t in zip(faces, ids)])


def identities_to_detection_array(faces: Sequence[Face],
                                  categories: Sequence[Optional[Category]], header,
                                  unknown: str = "unknown",
                                  track_ids: Optional[Sequence[Optional[str]]] = None,
                                  ) -> Detection2DArray:
    """Recognizer output: results[0] = (identity or ``unknown``, similarity; 0 when unknown),
    landmarks and track ids as in faces_to_detection_array."""
    if len(faces) != len(categories):
        raise ValueError(f"{len(faces)} faces but {len(categories)} identities")
    ids = _ids(track_ids, len(faces))
    dets = [_detection(header, face, *identity_hypothesis(cat, unknown), track_id)
            for face, cat, track_id in zip(faces, categories, ids)]
    return Detection2DArray(header=header, detections=dets)


def detection_array_to_faces(msg: Detection2DArray) -> list[Face]:
    """Detection2DArray (ours or any detector's) -> Faces; landmarks None where it has none.

    Landmarks come from the ``landmark/*`` results, else from an old-style JSON id (read for one
    release). Raises face_fields.DetectionFieldError for a box with negative size or malformed
    landmarks.
    """
    faces = []
    for det in msg.detections:
        box = center_size_to_box(det.bbox.center.position.x, det.bbox.center.position.y,
                                 det.bbox.size_x, det.bbox.size_y)
        score = det.results[0].hypothesis.score if det.results else 1.0
        landmarks = landmarks_from_hypotheses(
            (r.hypothesis.class_id, r.pose.pose.position.x, r.pose.pose.position.y)
            for r in det.results)
        if landmarks is None:
            landmarks = landmarks_from_legacy_id(det.id)
        faces.append(Face(box, score, landmarks))
    return faces


def detection_track_ids(msg: Detection2DArray) -> list[Optional[str]]:
    """The sender's track id of every detection, as sent (None: untracked)."""
    return [track_id_from_field(det.id) for det in msg.detections]


class LabelNumbering:
    """LabelInfo class numbers that stay put while a node runs: 0 is the unknown label, a name
    keeps the number it first got (also after it was removed and enrolled again), a new name
    gets the next unused number; ``version`` counts the changes of the published set."""

    MAX_ID = 65535  # VisionClass.class_id is a uint16

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.version = 0
        self._current: Optional[tuple] = None

    def update(self, names: Sequence[str], unknown: str) -> list[tuple[int, str]]:
        """(class_id, name) pairs for ``names``; bumps ``version`` when the set changed."""
        pairs = [(0, unknown)]
        for name in names:
            if name not in self.ids:
                number = len(self.ids) + 1
                if number > self.MAX_ID:
                    raise ValueError(f"LabelInfo holds at most {self.MAX_ID} identities "
                                     "(VisionClass.class_id is a uint16)")
                self.ids[name] = number
            pairs.append((self.ids[name], name))
        key = tuple(pairs)
        if key != self._current:
            self._current = key
            self.version += 1
        return pairs


LABEL_VERSION_PREFIX = "label_version:"


def label_info(names: Sequence[str], header, threshold: float, unknown: str = "unknown",
               numbering: Optional[LabelNumbering] = None) -> LabelInfo:
    """vision_msgs/LabelInfo: class 0 = ``unknown``, then the gallery identities, numbered by
    ``numbering`` (stable while it lives; a fresh one numbers them 1.. in gallery order).

    LabelInfo has no version field: ``header.frame_id`` carries ``label_version:<N>``, which
    grows whenever the map changes (docs/topics.md)."""
    numbering = numbering if numbering is not None else LabelNumbering()
    pairs = numbering.update(names, unknown)
    header = Header(stamp=header.stamp, frame_id=f"{LABEL_VERSION_PREFIX}{numbering.version}")
    msg = LabelInfo(header=header, threshold=float(threshold))
    for number, name in pairs:
        msg.class_map.append(VisionClass(class_id=number, class_name=name))
    return msg


def label_version(msg: LabelInfo) -> Optional[int]:
    """The version a LabelInfo from label_info() carries (None for other publishers')."""
    text = msg.header.frame_id
    if text.startswith(LABEL_VERSION_PREFIX) and text[len(LABEL_VERSION_PREFIX):].isdigit():
        return int(text[len(LABEL_VERSION_PREFIX):])
    return None
