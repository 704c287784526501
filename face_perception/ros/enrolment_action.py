"""The face_recognizer's enrolment: the ``~/enroll`` action (face_perception/action/Enroll)
and the non-waiting ``~/enroll`` service kept for the largest face.

Nothing waits in a callback. An accepted goal becomes an EnrolmentSession that the frame thread
feeds with the frames the node processes anyway (``observe``); a 10 Hz timer of this module's
reentrant callback group publishes feedback, ends sessions whose timeout passed and, once a
session is done (its frames seen, cancelled, timed out), starts the goal's execution: the
execute callback embeds and chooses the views, checks them (one person, not already someone
else) and saves them. While frames are collected the goal is ACCEPTED; it is EXECUTING only for
that last step. Other services, cancel and shutdown are never held up by a pending goal.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup

from face_perception.enrolment.stream import (
    EnrolmentSession,
    Frame,
    check_goal,
)
from face_perception.ros.interfaces import Enroll, EnrollIdentity

TICK_S = 0.1  # feedback, timeouts and hand-over to execution: at most this late
MAX_GOALS = 8  # enrolments collecting at once; more are refused with the reason


class EnrolmentServer:
    """Owned by the RecognizerNode (``node``); saves through its GalleryServices."""

    def __init__(self, node, gallery_services):
        self.node = node
        self.gallery = gallery_services
        self.group = ReentrantCallbackGroup()
        self.action: Optional[ActionServer] = None
        self.service = None
        self.timer = None
        self._lock = threading.Lock()
        self._sessions: dict[bytes, tuple] = {}  # goal id -> (goal handle, session, feedback)
        self._finishing: dict[bytes, EnrolmentSession] = {}  # handed over to execution
        self._refused: dict[bytes, str] = {}  # goal id -> why, for goals refused on arrival
        self._last: Optional[Frame] = None  # the last processed frame
        self.finished = {"succeeded": 0, "refused": 0, "cancelled": 0}

    # ---- life cycle -----------------------------------------------------------------------
    def create(self) -> None:
        node = self.node
        self.action = ActionServer(
            node, Enroll, "~/enroll", execute_callback=self._execute,
            goal_callback=lambda goal: GoalResponse.ACCEPT,  # refusals carry a reason
            handle_accepted_callback=self._on_accepted, cancel_callback=self._on_cancel,
            callback_group=self.group)
        self.service = node.create_service(EnrollIdentity, "~/enroll", self._on_service,
                                           callback_group=self.gallery.group)
        self.timer = node.create_timer(TICK_S, self._tick, callback_group=self.group)

    def destroy(self) -> None:
        self.abort_all("the node is shutting down")
        if self.timer is not None:
            self.node.destroy_timer(self.timer)
        if self.service is not None:
            self.node.destroy_service(self.service)
        if self.action is not None:
            self.action.destroy()
        self.action = self.service = self.timer = None
        with self._lock:
            self._sessions.clear()
            self._finishing.clear()
            self._refused.clear()
        self._last = None

    def abort_all(self, reason: str) -> None:
        """End every collecting session without enrolling (their results say ``reason``)."""
        with self._lock:
            sessions = [s for _, s, _ in self._sessions.values()]
        for session in sessions:
            session.abort(reason)

    @property
    def pending(self) -> int:
        """Goals collecting frames or being finished."""
        with self._lock:
            return len(self._sessions) + len(self._finishing)

    # ---- frames (the frame thread) --------------------------------------------------------
    def observe(self, setup, image, faces, tracked) -> None:
        frame = Frame(image, faces, tracked, time.monotonic())
        self._last = frame
        with self._lock:
            sessions = [s for _, s, _ in self._sessions.values()]
        for session in sessions:
            session.observe(setup.recognizer, frame)

    # ---- the action -----------------------------------------------------------------------
    def _goal(self, request, track_id: str, max_frames, max_samples, timeout_s,
              allow_duplicate):
        values = self.node.values
        return check_goal(request.name, track_id, max_frames, max_samples, timeout_s,
                          allow_duplicate,
                          defaults={"max_frames": values["enroll_frames"],
                                    "max_samples": values["enroll_max_samples"],
                                    "timeout_s": values["enroll_timeout"]},
                          reserved=[values["unknown_label"]])

    def _unusable(self) -> str:
        setup, why = self.gallery.target()
        if setup is None:
            return why
        if self.node.state != "active":
            return f"node is {self.node.state}: activate it first"
        return ""

    def _on_accepted(self, goal_handle) -> None:
        key = bytes(goal_handle.goal_id.uuid)
        req = goal_handle.request
        try:
            why = self._unusable()
            if not why:
                goal = self._goal(req, req.track_id, req.max_frames, req.max_samples,
                                  req.timeout_s, req.allow_duplicate)
                with self._lock:
                    if len(self._sessions) >= MAX_GOALS:
                        why = f"{MAX_GOALS} enrolments are running already; try again later"
                    else:
                        now = time.monotonic()
                        session = EnrolmentSession(goal, now)
                        session.start(self.node.model.recognizer, self._last,
                                      self.node.values["enroll_max_frame_age"], now)
                        self._sessions[key] = (goal_handle, session, None)
        except ValueError as exc:
            why = str(exc)
        if why:
            with self._lock:
                self._refused[key] = why
            goal_handle.execute()  # straight to the result that says why

    def _on_cancel(self, goal_handle) -> CancelResponse:
        with self._lock:
            entry = self._sessions.get(bytes(goal_handle.goal_id.uuid))
        if entry is None:
            return CancelResponse.REJECT  # finishing already: its result is on the way
        entry[1].cancel()
        return CancelResponse.ACCEPT

    def _tick(self) -> None:
        """Feedback, timeouts, and execution of the goals whose collection ended."""
        try:
            for handle in self._hand_over(time.monotonic()):
                handle.execute()
        except Exception as exc:  # noqa: BLE001 - an escaping exception would end the node
            self.node.get_logger().error(f"enrolment timer failed: {type(exc).__name__}: "
                                         f"{exc}", throttle_duration_sec=5.0)

    def _hand_over(self, now: float) -> list:
        """Publish feedback; move the sessions that ended to execution (each once)."""
        ready = []
        with self._lock:
            for key, (handle, session, last) in list(self._sessions.items()):
                session.expire(now)
                if session.done:
                    # A cancelled goal is handed over once the server marked it CANCELING.
                    if session.ended != "cancelled" or handle.is_cancel_requested:
                        del self._sessions[key]
                        self._finishing[key] = session
                        ready.append(handle)
                    continue
                feedback = (session.frames_seen, session.samples)
                if feedback != last:
                    self._sessions[key] = (handle, session, feedback)
                    handle.publish_feedback(Enroll.Feedback(frames_seen=feedback[0],
                                                            samples=feedback[1]))
        return ready

    def _execute(self, goal_handle):
        key = bytes(goal_handle.goal_id.uuid)
        result = Enroll.Result()
        with self._lock:
            why = self._refused.pop(key, None)
            session = self._finishing.get(key)
        if why is not None or session is None:
            result.message = f"nothing enrolled for {goal_handle.request.name!r}: " \
                             f"{why or 'the enrolment ended'}"
            self.finished["refused"] += 1
            goal_handle.abort()
            return result
        try:
            result = self._finish(session, result)
        finally:
            with self._lock:
                self._finishing.pop(key, None)
        if session.ended == "cancelled" and goal_handle.is_cancel_requested:
            self.finished["cancelled"] += 1
            goal_handle.canceled()
        elif result.success:
            self.finished["succeeded"] += 1
            goal_handle.succeed()
        else:
            self.finished["refused"] += 1
            goal_handle.abort()
        return result

    def _finish(self, session: EnrolmentSession, result):
        """Embed, check and save a session whose collection ended; the Result."""
        name = session.goal.name
        setup, why = self.gallery.target()
        if setup is None:
            result.message = f"nothing enrolled for {name!r}: {why}"
            return result
        try:
            outcome = session.finish(setup.recognizer)
            if not outcome.ok:
                result.message = f"nothing enrolled for {name!r}: {outcome.reason}"
                if outcome.matched is not None:
                    result.matched_name, result.matched_score = outcome.matched
                self.node.get_logger().info(result.message)
                return result
            name, added, total = self.gallery.save(setup, name, outcome.selection)
        except (ValueError, OSError) as exc:  # GalleryError is a ValueError
            result.message = f"nothing enrolled for {name!r}: {exc}"
            self.node.get_logger().error(result.message)
            return result
        result.success, result.samples_added, result.samples = True, added, total
        result.message = (f"enrolled {added} of {outcome.selection.candidates} views of "
                          f"{session.goal.what} as {name!r} ({total} samples in all)")
        self.node.get_logger().info(result.message)
        return result

    # ---- the service (largest face only, never waits) -------------------------------------
    def _on_service(self, request, response):
        response.success = False
        try:
            why = self._unusable()
            if not why and request.track_id:
                why = ("a track is enrolled over frames: use the ~/enroll action "
                       "(face_perception/action/Enroll)")
            if not why:
                goal = self._goal(request, "", 1, 1, 0.0, False)
                now = time.monotonic()
                session = EnrolmentSession(goal, now)
                session.start(self.node.model.recognizer, self._last,
                              self.node.values["enroll_max_frame_age"], now)
                if not session.pool.seen:
                    why = (f"no face in a frame at most enroll_max_frame_age="
                           f"{self.node.values['enroll_max_frame_age']:g} s old")
                else:
                    session.ended = session.ended or "ready"
        except ValueError as exc:
            why = str(exc)
        if why:
            response.message = f"nothing enrolled for {request.name!r}: {why}"
            return response
        result = self._finish(session, Enroll.Result())
        response.success, response.message = result.success, result.message
        response.samples_added, response.samples = result.samples_added, result.samples
        return response
