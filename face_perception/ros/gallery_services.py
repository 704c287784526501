"""The face_recognizer's gallery file: ``~/reload_gallery`` (std_srvs/Trigger) and a reload when
the file changes (polled every ``gallery_poll_period``), ``~/forget`` and ``~/list_identities``
(their own callback group: they answer while an enrolment goal runs), saving enrolled views, and
learning strangers as anon_<n>. One writer lock: one gallery file change at a time."""
from __future__ import annotations

import threading
from typing import Optional

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from std_srvs.srv import Trigger

from face_perception.pipeline.build import gallery_stamp
from face_perception.ros.interfaces import ForgetIdentity, ListIdentities


class GalleryServices:
    """Owned by the RecognizerNode (``node``: its values, model setup, reload_gallery() and
    logger)."""

    def __init__(self, node):
        self.node = node
        self.group = MutuallyExclusiveCallbackGroup()
        self.services: list = []
        self.poll_timer = None
        self.learner = None
        self.learnt = 0
        self._write_lock = threading.Lock()

    def create(self) -> None:
        node = self.node
        self.services = [
            node.create_service(Trigger, "~/reload_gallery", self._on_reload),
            node.create_service(ForgetIdentity, "~/forget", self._on_forget,
                                callback_group=self.group),
            node.create_service(ListIdentities, "~/list_identities", self._on_list,
                                callback_group=self.group)]
        self.restart_poll()

    def destroy(self) -> None:
        for srv in self.services:
            self.node.destroy_service(srv)
        self.services = []
        self._stop_poll()

    def restart_poll(self) -> None:
        """Check the gallery file every ``gallery_poll_period`` seconds (0: never)."""
        self._stop_poll()
        period = float(self.node.values["gallery_poll_period"])
        if period > 0:
            self.poll_timer = self.node.create_timer(period, self._poll)

    def _stop_poll(self) -> None:
        if self.poll_timer is not None:
            self.node.destroy_timer(self.poll_timer)
            self.poll_timer = None

    def _poll(self) -> None:
        setup = self.node.model
        if setup is None:
            return
        stamp = gallery_stamp(setup.gallery_path)
        if stamp is not None and stamp != setup.gallery_stamp:
            self.node.get_logger().info(f"gallery file {setup.gallery_path} changed: reloading")
            self.node.reload_gallery()

    def _on_reload(self, request, response):
        response.success, response.message = self.node.reload_gallery()
        return response

    def target(self):
        """(setup, '') when the node has a gallery file to write, else (None, why)."""
        setup = self.node.model
        if setup is None:
            return None, f"node is {self.node.state}: configure it first"
        if not setup.gallery_path:
            return None, "no gallery_path set: nowhere to save identities"
        return setup, ""

    def save(self, setup, name: Optional[str], selection) -> tuple[str, int, int]:
        """Add ``selection``'s views (embeddings, qualities) to the gallery file and reload;
        (name, added, total). ``name`` None: the next anon_<n>."""
        from face_perception.enrolment.gallery_file import enrol_into_file

        emb = selection.embeddings
        with self._write_lock:
            name, total = enrol_into_file(setup.gallery_path, setup.embedder.meta, name, emb,
                                          selection.sources, selection.qualities)
        self.node.reload_gallery()
        return name, len(emb), total

    def learn(self, setup, image, tracked) -> None:
        """learn_unknown: enrol tracks that stay unknown (the frame thread)."""
        from face_perception.enrolment.stream import UnknownLearner

        values = self.node.values
        if not values["learn_unknown"] or not setup.gallery_path:
            self.learner = None
            return
        if self.learner is None or self.learner.after != values["learn_after"]:
            self.learner = UnknownLearner(values["learn_after"], values["enroll_max_samples"])
        for selection in self.learner.observe(setup.recognizer, image, tracked):
            name, added, _ = self.save(setup, None, selection)
            self.learnt += 1
            self.node.get_logger().info(f"learnt an unknown face as {name!r} ({added} samples)")

    def _on_forget(self, request, response):
        from face_perception.enrolment.gallery_file import forget_in_file

        response.success = False
        setup, why = self.target()
        if setup is None:
            response.message = why
            return response
        try:
            with self._write_lock:
                removed = forget_in_file(setup.gallery_path, request.name,
                                         self.node.values["forget_compacts"])
        except (ValueError, OSError) as exc:
            response.message = f"nothing forgotten: {exc}"
            return response
        self.node.reload_gallery()
        response.success, response.samples_removed = True, removed
        response.message = f"forgot {request.name!r} ({removed} samples)"
        self.node.get_logger().info(response.message)
        return response

    def _on_list(self, request, response):
        setup = self.node.model
        gallery = setup.gallery if setup is not None else None
        names = gallery.names if gallery is not None else []
        response.names = names
        response.sample_counts = [gallery.count(n) for n in names]
        return response
