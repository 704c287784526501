"""rosbag2 files (.mcap, .db3) read and written with the pure-Python ``rosbags`` library.

No ROS runtime needed. vision_msgs is not part of rosbags' stock type store, so its types are
registered from the .msg definitions shipped as package data (a copy of interfaces/vision_msgs).
"""
from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from face_perception.messages.face_fields import (
    LANDMARK_SCORE,
    box_to_center_size,
    identity_hypothesis,
    landmark_hypotheses,
    track_id_to_field,
)
from face_perception.messages.images import (
    bgr_to_compressed,
    bgr_to_raw,
    compressed_to_bgr,
    raw_to_bgr,
)
from face_perception.messages.stamps import ns_to_sec_nanosec
from face_perception.types import Category, Face

MSG_DIR = Path(__file__).resolve().parent / "msg" / "vision_msgs"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
DETECTIONS = "vision_msgs/msg/Detection2DArray"
STORAGES = ("mcap", "sqlite3")


class BagError(ValueError):
    """A bag that cannot be used as asked: missing topic, wrong message type, existing output."""


@functools.lru_cache(maxsize=1)
def typestore():
    """Jazzy's message types plus vision_msgs, parsed from the shipped .msg files."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    types = {}
    for path in sorted(MSG_DIR.glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"vision_msgs/msg/{path.stem}"))
    if not types:
        raise FileNotFoundError(f"vision_msgs definitions missing from {MSG_DIR}")
    store.register(types)
    return store


@dataclass
class ImageRecord:
    """One image message of a bag: log time, deserialised message and its type name."""

    timestamp: int
    msg: object
    msgtype: str
    rawdata: bytes
    connection: object


@contextlib.contextmanager
def open_reader(bag_path):
    from rosbags.rosbag2 import Reader, ReaderError

    path = _existing(bag_path)
    try:
        reader = Reader(path)
        reader.open()
    except ReaderError as exc:
        raise BagError(f"cannot read bag {path}: {exc}") from None
    try:
        yield reader
    finally:
        reader.close()


def image_topic_info(bag_path, topic: str) -> tuple[str, int]:
    """(message type, message count) of ``topic``; BagError names the topics the bag has."""
    with open_reader(bag_path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        if not conns:
            topics = ", ".join(f"{c.topic} [{c.msgtype}]" for c in reader.connections) or "none"
            raise BagError(f"topic {topic!r} not in bag {bag_path}; it has: {topics}")
        msgtype = conns[0].msgtype
        if msgtype not in (IMAGE, COMPRESSED):
            raise BagError(f"topic {topic!r} in {bag_path} holds {msgtype}, not "
                           f"{IMAGE} or {COMPRESSED}")
        return msgtype, sum(c.msgcount for c in conns)


def read_images(bag_path, topic: str) -> Iterator[ImageRecord]:
    """Yield the image messages of ``topic`` in log-time order."""
    image_topic_info(bag_path, topic)
    store = typestore()
    with open_reader(bag_path) as reader:
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, timestamp, rawdata in reader.messages(connections=conns):
            yield ImageRecord(timestamp, store.deserialize_cdr(rawdata, conn.msgtype),
                              conn.msgtype, rawdata, conn)


def decode_image(record: ImageRecord) -> np.ndarray:
    """The BGR pixels of an image record (raw or compressed)."""
    msg = record.msg
    if record.msgtype == COMPRESSED:
        return compressed_to_bgr(msg.format, msg.data)
    return raw_to_bgr(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian)


def open_writer(out_path, storage: str = "mcap"):
    """An opened rosbags Writer for a new bag directory (refuses to overwrite)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    if storage not in STORAGES:
        raise BagError(f"storage must be one of {STORAGES}, got {storage!r}")
    out = Path(out_path)
    if out.exists():
        raise BagError(f"output bag {out} exists already; choose a new path")
    writer = Writer(out, version=9, storage_plugin=StoragePlugin[storage.upper()])
    writer.open()
    return writer


def storage_of(bag_path) -> str:
    """'mcap' or 'sqlite3': the storage of an existing bag (directory or single file)."""
    path = _existing(bag_path)
    files = [path] if path.is_file() else list(path.iterdir())
    if any(f.suffix == ".db3" for f in files):
        return "sqlite3"
    return "mcap"


def header(stamp_ns: int, frame_id: str):
    store = typestore()
    Time = store.types["builtin_interfaces/msg/Time"]
    Header = store.types["std_msgs/msg/Header"]
    sec, nanosec = ns_to_sec_nanosec(stamp_ns)
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_message(image_bgr: np.ndarray, hdr, compressed: Optional[str] = None):
    """A rosbags sensor_msgs Image (bgr8) or CompressedImage ('jpeg'/'png') message."""
    store = typestore()
    if compressed:
        fields = bgr_to_compressed(image_bgr, compressed)
        return store.types[COMPRESSED](header=hdr, format=fields["format"], data=fields["data"])
    fields = bgr_to_raw(image_bgr)
    fields["data"] = fields["data"].reshape(-1)
    return store.types[IMAGE](header=hdr, **fields)


def detection_array(hdr, faces: Sequence[Face],
                    categories: Optional[Sequence[Optional[Category]]] = None,
                    class_id: str = "face", unknown: str = "unknown",
                    track_ids: Optional[Sequence[Optional[str]]] = None):
    """A rosbags vision_msgs/Detection2DArray: detections, or identities when categories given.

    Same field mapping as the nodes (face_fields): results[0] = class_id "face" and the detector
    score, or the identity ("unknown" when unmatched) and its similarity; results[1..5] the
    landmarks; id = the face's track id (None or no ``track_ids``: '').
    """
    t = typestore().types
    if track_ids is not None and len(track_ids) != len(faces):
        raise ValueError(f"{len(faces)} faces but {len(track_ids)} track ids")

    def hypothesis(name: str, score: float, x: float = 0.0, y: float = 0.0):
        pose = t["geometry_msgs/msg/PoseWithCovariance"](
            pose=t["geometry_msgs/msg/Pose"](
                position=t["geometry_msgs/msg/Point"](x=x, y=y, z=0.0),
                orientation=t["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)),
            covariance=np.zeros(36, dtype=np.float64))
        return t["vision_msgs/msg/ObjectHypothesisWithPose"](
            hypothesis=t["vision_msgs/msg/ObjectHypothesis"](class_id=name, score=float(score)),
            pose=pose)

    dets = []
    for i, face in enumerate(faces):
        cx, cy, w, h = box_to_center_size(face.box)
        if categories is None:
            name, score = class_id, face.score
        else:
            name, score = identity_hypothesis(categories[i], unknown)
        results = [hypothesis(name, score)] + [
            hypothesis(cid, LANDMARK_SCORE, x, y) for cid, x, y in landmark_hypotheses(
                face.landmarks)]
        bbox = t["vision_msgs/msg/BoundingBox2D"](
            center=t["vision_msgs/msg/Pose2D"](
                position=t["vision_msgs/msg/Point2D"](x=cx, y=cy), theta=0.0),
            size_x=w, size_y=h)
        dets.append(t["vision_msgs/msg/Detection2D"](
            header=hdr, results=results, bbox=bbox,
            id=track_id_to_field(track_ids[i] if track_ids is not None else None)))
    return t[DETECTIONS](header=hdr, detections=dets)


def write_image_bag(out_path, frames: Iterable[tuple[int, np.ndarray]], topic: str = "/image",
                    frame_id: str = "camera", storage: str = "mcap",
                    compressed: Optional[str] = None) -> Path:
    """Write (stamp_ns, BGR image) frames as a bag of one image topic; returns the bag path.

    Tests, the demo and the benchmarks make their input bags with this from real photos.
    """
    store = typestore()
    writer = open_writer(out_path, storage)
    try:
        conn = writer.add_connection(topic, COMPRESSED if compressed else IMAGE,
                                     typestore=store)
        for stamp, img in frames:
            msg = image_message(img, header(stamp, frame_id), compressed)
            writer.write(conn, int(stamp), store.serialize_cdr(msg, conn.msgtype))
    finally:
        writer.close()
    return Path(out_path)


def _existing(bag_path) -> Path:
    path = Path(bag_path)
    if not path.exists():
        raise FileNotFoundError(f"bag not found: {path}")
    return path
