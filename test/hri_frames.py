"""Frames for the face_hri_bridge tests: a real photo, the real detector's box and landmarks, and
the identities array the recognizer would send with it (docs/topics.md's fields)."""
from __future__ import annotations

import cv2
import numpy as np
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose

from test.ros_harness import image_msg

POINTS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


def detection(box, landmarks, track_id: str, class_id: str, score: float, header):
    """An identities Detection2D as the recognizer sends it: the track id in ``id``, the name in
    results[0], the landmarks as ``landmark/<point>`` results (docs/topics.md)."""
    d = Detection2D(header=header, id=track_id)
    x1, y1, x2, y2 = (float(v) for v in box)
    d.bbox.center.position.x, d.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
    d.bbox.size_x, d.bbox.size_y = x2 - x1, y2 - y1
    for cid, s, (x, y) in [(class_id, score, (0.0, 0.0))] + [
            (f"landmark/{p}", -1.0, pt) for p, pt in zip(POINTS, landmarks)]:
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id, hyp.hypothesis.score = cid, float(s)
        hyp.pose.pose.position.x, hyp.pose.pose.position.y = float(x), float(y)
        d.results.append(hyp)
    return d


def photo_face(photos, detector, name: str = "obama.jpg", width: int = 320):
    """(image, box, landmarks): the photo scaled to ``width`` pixels (small enough for default
    Fast DDS at any QoS) and its one face as the real detector finds it."""
    img = cv2.imread(str(photos / name))
    scale = width / img.shape[1]
    img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    (face,) = detector.detect(img)
    return img, np.asarray(face.box), np.asarray(face.landmarks)


def send_frame(image_pub, faces_pub, image, box, landmarks, stamp: int, frame_id: str,
               tracks) -> int:
    """Publish the face array and the image of one frame, one face per (track id, class id,
    score) of ``tracks`` (all with the same box); the stamp."""
    msg = image_msg(image, stamp, frame_id)
    faces_pub.publish(Detection2DArray(header=msg.header, detections=[
        detection(box, landmarks, t, c, s, msg.header) for t, c, s in tracks]))
    image_pub.publish(msg)
    return stamp
