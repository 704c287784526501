"""The face_recognizer's gallery file changes: ``~/forget`` and ``~/list_identities`` (their own
callback group: they answer while an enrolment goal runs), saving enrolled views, and learning
strangers as anon_<n>. One writer lock: one gallery file change at a time."""
from __future__ import annotations

import threading
from typing import Optional

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup

from face_perception.ros.interfaces import ForgetIdentity, ListIdentities


class GalleryServices:
    """Owned by the RecognizerNode (``node``: its values, model setup, reload and logger)."""

    def __init__(self, node):
        self.node = node
        self.group = MutuallyExclusiveCallbackGroup()
        self.services: list = []
        self.learner = None
        self.learnt = 0
        self._write_lock = threading.Lock()

    def create(self) -> None:
        node = self.node
        self.services = [
            node.create_service(ForgetIdentity, "~/forget", self._on_forget,
                                callback_group=self.group),
            node.create_service(ListIdentities, "~/list_identities", self._on_list,
                                callback_group=self.group)]

    def destroy(self) -> None:
        for srv in self.services:
            self.node.destroy_service(srv)
        self.services = []

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
        from face_perception.recognition.enrolment.gallery_file import enrol_into_file

        emb = selection.embeddings
        with self._write_lock:
            name, total = enrol_into_file(setup.gallery_path, setup.embedder.meta, name, emb,
                                          selection.sources, selection.qualities)
        self.node.reload_gallery()
        return name, len(emb), total

    def learn(self, setup, image, tracked) -> None:
        """learn_unknown: enrol tracks that stay unknown (the frame thread)."""
        from face_perception.recognition.enrolment.stream import UnknownLearner

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
        from face_perception.recognition.enrolment.gallery_file import forget_in_file

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
