"""Offline rosbag processing: detect (and identify) faces in a bag's image topic, write a new bag.

The output bag holds the original image messages unchanged plus vision_msgs/Detection2DArray
topics with the image headers and log times, so it replays exactly like the live nodes' output.
No ROS runtime: rosbags (face_perception.bag.rosbag_io) reads and writes .mcap and .db3.
"""
from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from face_perception.bag import rosbag_io
from face_perception.messages.images import ImageMessageError
from face_perception.messages.stamps import stamp_to_ns


@dataclass
class BagSummary:
    """What a run did: counts, identities seen, time per frame."""

    output: Path
    frames: int = 0
    bad_frames: int = 0
    faces: int = 0
    identities: Counter = field(default_factory=Counter)
    unknown: int = 0
    seconds: float = 0.0
    topics: dict = field(default_factory=dict)
    identity_mode: str = "live"
    embeddings: int = 0

    @property
    def ms_per_frame(self) -> float:
        done = self.frames - self.bad_frames
        return 1000.0 * self.seconds / done if done else 0.0

    def text(self) -> str:
        lines = [f"frames: {self.frames} ({self.bad_frames} unreadable)",
                 f"faces: {self.faces}",
                 f"ms/frame: {self.ms_per_frame:.1f} (decode + detection"
                 f"{' + recognition' if self.identities or self.unknown else ''})"]
        if self.identities or self.unknown:
            known = ", ".join(f"{n} x{c}" for n, c in self.identities.most_common())
            lines.append(f"identities: {known or 'none'}; unknown: {self.unknown}")
            lines.append(f"identity mode: {self.identity_mode}; embeddings: {self.embeddings}")
        lines += [f"wrote {self.output}:"] + [f"  {t} [{m}]" for t, m in self.topics.items()]
        return "\n".join(lines)


def output_topics(image_topic: str) -> dict[str, str]:
    """Default output topics next to the image topic, as the nodes in its namespace would use.

    /camera/image_raw -> /camera/faces/detections, /camera/faces/identities, ...
    """
    ns = image_topic.rsplit("/", 1)[0] if "/" in image_topic.strip("/") else ""
    base = f"{ns}/faces"
    return {"detections": f"{base}/detections", "identities": f"{base}/identities",
            "detections_image": f"{base}/detections/image",
            "identities_image": f"{base}/identities/image"}


def process_bag(input_bag, output_bag, image_topic: str, detector, recognizer=None,
                annotated: bool = False, storage: Optional[str] = None,
                topics: Optional[dict[str, str]] = None, progress: bool = True,
                unknown: str = "unknown", tracking: bool = True,
                anonymize: str = "none", identity_mode: str = "offline") -> BagSummary:
    """Run ``detector`` (and ``recognizer``, a face_perception Recognizer) over every image.

    With ``tracking`` (default) faces are tracked across frames by their header stamps (the
    confirmed track's id goes into ``Detection2D.id`` of both topics) and each track is named
    from its accumulated evidence (face_perception.pipeline.FacePipeline, the object the nodes
    and ``face-perception video`` use); without it every frame is judged alone.
    identity_mode "offline" (default) reads the bag twice: a track's name is decided from all
    of its frames and written on every one of them; "live" names each frame from the frames
    before it only, as the nodes do. The bag's metadata records it (custom_data
    ``face_perception.identity_mode``: offline, live, or single-frame without tracking).

    Writes ``output_bag`` (a new bag folder; storage 'mcap' or 'sqlite3', default: the input's).
    Unreadable frames are counted and skipped (their image is still copied). Raises BagError for
    a missing topic or an existing output, FileNotFoundError for a missing input.
    """
    from face_perception.pipeline import FacePipeline, identity_mode_for, run_passes
    from face_perception.tracking import FaceTracker

    msgtype, count = rosbag_io.image_topic_info(input_bag, image_topic)
    storage = storage or rosbag_io.storage_of(input_bag)
    names = {**output_topics(image_topic), **(topics or {})}
    store = rosbag_io.typestore()
    mode, recorded = identity_mode_for(identity_mode, tracking, rereadable=True)
    summary = BagSummary(Path(output_bag), identity_mode=recorded)
    pipeline = FacePipeline(detector, recognizer, FaceTracker() if tracking else None,
                            anonymize=anonymize, identity_mode=mode)
    bar = _progress(count * pipeline.passes, progress)

    def read_frames():
        for rec in rosbag_io.read_images(input_bag, image_topic):
            yield stamp_to_ns(rec.msg.header.stamp), rec

    frames = run_passes(pipeline, read_frames, decode=lambda rec: _decode(rec, summary),
                        attach_image=annotated,
                        progress=bar.update if bar is not None else None)
    writer = rosbag_io.open_writer(output_bag, storage)
    try:
        writer.set_custom_data("face_perception.identity_mode", recorded)
        conns = _add_connections(writer, store, image_topic, msgtype, names,
                                 recognizer is not None, annotated)
        summary.topics = {c.topic: c.msgtype for c in conns.values()}
        for frame in frames:
            _write_frame(writer, store, conns, frame, unknown, summary)
        if bar is not None:
            bar.close()
    except BaseException:
        # Leave no half-written bag behind: a re-run would refuse the existing folder.
        writer.close()
        shutil.rmtree(output_bag, ignore_errors=True)
        raise
    writer.close()
    summary.embeddings = pipeline.embeddings
    return summary


def _add_connections(writer, store, image_topic: str, msgtype: str, names: dict[str, str],
                     identities: bool, annotated: bool) -> dict:
    """The output bag's topics: the images, detections (identities with a recognizer) and,
    when ``annotated``, the drawn images."""
    conns = {"image": writer.add_connection(image_topic, msgtype, typestore=store)}
    for key in ["detections"] + (["identities"] if identities else []):
        conns[key] = writer.add_connection(names[key], rosbag_io.DETECTIONS, typestore=store)
    if annotated:
        key = "identities_image" if identities else "detections_image"
        conns["annotated"] = writer.add_connection(names[key], rosbag_io.IMAGE,
                                                   typestore=store)
    return conns


def _write_frame(writer, store, conns, frame, unknown: str, summary: BagSummary) -> None:
    """The frame's image unchanged, then its results (none for an undecodable frame)."""
    rec = frame.source
    summary.frames += 1
    summary.seconds += frame.seconds
    writer.write(conns["image"], rec.timestamp, rec.rawdata)
    if frame.result is not None:
        _write_result(writer, store, conns, rec.timestamp, rec.msg.header,
                      frame.result, unknown, summary)


def _decode(rec, summary: BagSummary):
    """The record's image, or None (counted, reported) when it cannot be decoded."""
    try:
        return rosbag_io.decode_image(rec)
    except ImageMessageError as exc:
        summary.bad_frames += 1
        print(f"skipping frame at {rec.timestamp} ns: {exc}", file=sys.stderr)
        return None


def _write_result(writer, store, conns, timestamp: int, hdr, result, unknown: str,
                  summary: BagSummary) -> None:
    faces, cats, ids = result.faces, result.categories, result.track_ids
    _write(writer, store, conns["detections"], timestamp,
           rosbag_io.detection_array(hdr, faces, track_ids=ids))
    summary.faces += len(faces)
    if cats is not None:
        _write(writer, store, conns["identities"], timestamp,
               rosbag_io.detection_array(hdr, faces, cats, unknown=unknown, track_ids=ids))
        for cat in cats:
            if cat is None:
                summary.unknown += 1
            else:
                summary.identities[cat.name] += 1
    if "annotated" in conns:
        _write(writer, store, conns["annotated"], timestamp,
               rosbag_io.image_message(result.annotated(unknown), hdr))


def _write(writer, store, conn, timestamp: int, msg) -> None:
    writer.write(conn, timestamp, store.serialize_cdr(msg, conn.msgtype))


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", file=sys.stderr, desc="faces", leave=False)
