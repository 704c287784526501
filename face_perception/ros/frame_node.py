"""Lifecycle plumbing shared by the face nodes: parameters, image input, worker, diagnostics.

A subclass names its parameter table and supplies ``build_model`` (no ROS inside), its outputs
and ``process``. This class does the rest the same way for both nodes:
- parameters declared from the table, validated on change (rejected with a reason, never
  half-applied; a model-affecting change builds the new model first, then swaps it in);
- configure loads the model, activate creates the subscriptions and starts the worker,
  deactivate removes them, cleanup releases the model; ``autostart`` runs configure+activate;
  invalid parameters (from a params file or the command line) keep the node up and unconfigured:
  configure fails and says why until they are set right;
- every ``~/change_state`` request is answered: a transition not available in the current state
  (by id or label, as lifecycle managers send them) gets success=false and changes nothing;
- newest frame wins (frame_worker.FrameWorker): callbacks only store the latest frame, the worker
  thread processes it, replaced frames are counted as stale; per-frame failures are counted,
  logged with a rate limit, and never stop the node;
- /diagnostics (diagnostic_msgs/DiagnosticArray) at 1 Hz with the frame accounting, and the same
  statistics on request from the ``~/get_stats`` service (std_srvs/Trigger, JSON in ``message``).
"""
from __future__ import annotations

import json
import time
import traceback
import warnings
from typing import Any, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import (
    LifecycleNode,
    LifecyclePublisher,
    LifecycleState,
    TransitionCallbackReturn,
)
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions, QoSPolicyKind
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from face_perception.messages.images import UnsupportedEncodingError
from face_perception.ros.conversions import compressed_to_bgr_msg, image_to_bgr, stamp_to_ns
from face_perception.ros.frame_accounting import FrameAccounting
from face_perception.ros.frame_worker import FrameWorker
from face_perception.ros.lifecycle_requests import answer_every_change_state
from face_perception.ros.model_devices import devices_of
from face_perception.ros.params import ParamSpec, declare_checked

INPUT_KEYS = frozenset({"image_transport", "qos_reliability", "qos_depth"})
# qos_overrides./<topic>.subscription.<policy> parameters declared on the image subscription.
QOS_POLICIES = {QoSPolicyKind.RELIABILITY: ReliabilityPolicy, QoSPolicyKind.DEPTH: int,
                QoSPolicyKind.HISTORY: HistoryPolicy, QoSPolicyKind.DURABILITY: DurabilityPolicy}
LOG_EVERY_S = 5.0


class GuardedAccounting:
    """FrameAccounting whose failures are logged, never raised into a callback.

    An exception escaping a subscription or timer callback ends rclpy's spin, i.e. kills the
    node; statistics must never do that. A failing call returns the neutral value.
    """

    def __init__(self, acc: FrameAccounting, logger):
        self._acc = acc
        self._logger = logger

    def __getattr__(self, name: str):
        method = getattr(self._acc, name)

        def guarded(*args, **kwargs):
            try:
                return method(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - statistics must not stop the node
                self._logger.error(f"frame accounting {name}() failed: "
                                   f"{type(exc).__name__}: {exc}",
                                   throttle_duration_sec=LOG_EVERY_S * 6)
                return {} if name == "snapshot" else None
        return guarded


class FaceNodeBase(LifecycleNode):
    """Base of face_detector and face_recognizer (see module docstring)."""

    SPECS: Sequence[ParamSpec] = ()

    def __init__(self, node_name: str, **kwargs):
        super().__init__(node_name, **kwargs)
        self.specs = {s.name: s for s in self.SPECS}
        # Invalid overrides are kept as problems (the parameter holds its default): configure
        # refuses while any is left, so a lifecycle manager sees a FAILURE, not a dead process.
        self.values, self.param_problems = declare_checked(self, self.SPECS)
        for reason in self.param_problems.values():
            self.get_logger().error(f"invalid parameter: {reason}; configure will fail until "
                                    "it is set to a valid value")
        self.state = "unconfigured"
        self.devices_in_use = ""  # what the model runs on, after any CUDA fallback
        self.model: Any = None
        self.model_error = ""
        self.acc = GuardedAccounting(FrameAccounting(), self.get_logger())
        self.worker = FrameWorker(self._process_newest, self.acc, stride=self.frame_stride,
                                  report=self._report_failure, name=f"{node_name}_worker")
        self.reloads = 0
        self._inputs: list = []
        self._qos_declared: dict[str, dict[str, Any]] = {}  # override prefix -> declared values
        self.image_qos_text = ""  # reliability/depth/history/durability the subscription asked
        self.refused_encoding = 0  # frames in an encoding the decoder refuses (also dropped_bad)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        # Any state: tests and tools read the counters after the event they check.
        self._stats_srv = self.create_service(Trigger, "~/get_stats", self._on_get_stats)
        self._diag_timer = self.create_timer(1.0, self.publish_diagnostics)
        answer_every_change_state(self)
        self._autostart_timer = None
        if self.values["autostart"]:
            self._autostart_timer = self.create_timer(0.01, self._autostart)

    # ---- subclass hooks -------------------------------------------------------------------
    def build_model(self, values: dict[str, Any]) -> Any:
        raise NotImplementedError

    def create_outputs(self) -> None:
        raise NotImplementedError

    def destroy_outputs(self) -> None:
        raise NotImplementedError

    def create_extra_inputs(self) -> list:
        """Subscriptions besides the image one (the recognizer's detections)."""
        return []

    def on_image(self, msg, received_at: float) -> None:
        """Default: newest-frame-wins hand-over of (msg, receive time) to the worker."""
        self.worker.offer((msg, received_at))

    def process(self, item: Any, model: Any) -> None:
        raise NotImplementedError

    def prepare_model(self, values: dict[str, Any], changed: set[str]) -> Any:
        """The model for new parameter values, or None when the current one still fits.

        Runs before the values are accepted: raising rejects the change with the reason.
        """
        if any(self.specs[k].reload for k in changed):
            return self.build_model(values)
        return None

    def check_values(self, values: dict[str, Any]) -> Optional[str]:
        """Cross-parameter checks; a reason string rejects the values."""
        return None

    def on_values_changed(self, changed: set[str]) -> None:
        """Called after new parameter values were applied (call super() when overriding)."""
        if "process_every_n" in changed:
            self.worker.restart_stride()

    def diagnostic_values(self) -> dict[str, Any]:
        return {}

    def frame_stride(self) -> int:
        return int(self.values.get("process_every_n", 1))

    # ---- lifecycle ------------------------------------------------------------------------
    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        self.destroy_timer(self._autostart_timer)
        try:
            if self.state == "unconfigured":
                self.trigger_configure()
            if self.state == "inactive":
                self.trigger_activate()
        except Exception as exc:  # noqa: BLE001 - e.g. a client moved the state meanwhile
            self.get_logger().error(f"autostart stopped: {type(exc).__name__}: {exc}")

    def _transition(self, name: str, body) -> TransitionCallbackReturn:
        """Run a transition body; an exception is logged with its traceback (rclpy would turn
        it into ERROR silently) and gives ERROR, whose on_error releases everything."""
        try:
            return body()
        except Exception as exc:  # noqa: BLE001 - reported, then lifecycle error processing
            self.get_logger().error(f"{name} failed: {type(exc).__name__}: {exc}\n"
                                    f"{traceback.format_exc()}")
            return TransitionCallbackReturn.ERROR

    def configure_problem(self) -> str:
        """Why the current parameter values cannot be configured ('' when they can)."""
        reasons = list(self.param_problems.values())
        cross = self.check_values(self.values)
        if cross:
            reasons.append(cross)
        return "; ".join(reasons)

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        problem = self.configure_problem()
        if problem:
            self.model_error = f"invalid parameters: {problem}"
            self.get_logger().error(f"configure refused: {self.model_error}")
            return TransitionCallbackReturn.FAILURE
        try:
            self.model = self.build_model_logged(self.values)
        except Exception as exc:  # noqa: BLE001 - any load failure is reported, not raised
            self.model_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().error(f"configure failed, model not loaded: {self.model_error}")
            return TransitionCallbackReturn.FAILURE
        self.model_error = ""

        def body():
            self.create_outputs()
            self.state = "inactive"
            self.get_logger().info(f"configured: {self.describe_model()}")
            return super(FaceNodeBase, self).on_configure(state)
        return self._transition("configure", body)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body():
            # Frames that came while inactive were never ours to receive: the gap before the
            # next one is a pause of this node, not upstream loss.
            self.acc.on_resumed()
            self._create_inputs()
            self.worker.start()
            self.state = "active"
            self.get_logger().info("active: listening on "
                                   f"{', '.join(s.topic_name for s in self._inputs)}")
            return super(FaceNodeBase, self).on_activate(state)
        return self._transition("activate", body)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body():
            self._destroy_inputs()
            self.worker.stop()
            self.state = "inactive"
            return super(FaceNodeBase, self).on_deactivate(state)
        return self._transition("deactivate", body)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body():
            self.destroy_outputs()
            self.model = None
            self.devices_in_use = ""
            self.state = "unconfigured"
            return super(FaceNodeBase, self).on_cleanup(state)
        return self._transition("cleanup", body)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        def body():
            self.release()
            return super(FaceNodeBase, self).on_shutdown(state)
        return self._transition("shutdown", body)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Error processing succeeds into `unconfigured` (rcl's state machine): release all, so
        # a later configure starts clean.
        try:
            self.release()
        except Exception as exc:  # noqa: BLE001 - nothing left to fall back on
            self.get_logger().error(f"error processing failed: {type(exc).__name__}: {exc}")
            return TransitionCallbackReturn.FAILURE  # -> finalized
        self.state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def build_model_logged(self, values: dict[str, Any]) -> Any:
        """build_model with the core's warnings (e.g. CUDA unavailable, running on the CPU)
        sent to the node's log instead of stderr, and the devices in use recorded."""
        return self._logged(lambda: self.build_model(values), values)

    def _logged(self, build, values: dict[str, Any]) -> Any:
        # catch_warnings is process-wide: a warning of another thread meanwhile is logged here
        # too, which is still the node's log.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = build()
        # once per text: the recognizer's embedder and detector give the same CUDA fallback
        for text in dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in caught):
            self.get_logger().warning(text)
        if model is not None:
            self.devices_in_use = devices_of(model)
            requested = values.get("device", "cpu")
            if self.devices_in_use and requested not in self.devices_in_use.split(","):
                self.get_logger().warning(f"device {requested!r} requested, running on "
                                          f"{self.devices_in_use}")
        return model

    def release(self) -> None:
        """Stop input and worker, drop outputs and model (idempotent; also used at exit)."""
        self._destroy_inputs()
        self.worker.stop()
        self.destroy_outputs()  # idempotent; also drops what a failed configure left behind
        self.model = None
        self.devices_in_use = ""
        self.state = "finalized"

    def describe_model(self) -> str:
        return type(self.model).__name__

    # ---- input ----------------------------------------------------------------------------
    def image_qos(self) -> QoSProfile:
        reliable = self.values["qos_reliability"] == "reliable"
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(self.values["qos_depth"]),
                          reliability=ReliabilityPolicy.RELIABLE if reliable
                          else ReliabilityPolicy.BEST_EFFORT)

    def _create_inputs(self) -> None:
        if self.values["image_transport"] == "compressed":
            sub = self._image_subscription(CompressedImage, self.compressed_topic())
        else:
            sub = self._image_subscription(Image, "image")
        self._inputs = [sub, *self.create_extra_inputs()]

    def compressed_topic(self) -> str:
        """``<resolved image topic>/compressed``, as image_transport names it: a remap of
        ``image`` carries over. An explicit remap of ``image/compressed`` still wins."""
        own = self.resolve_topic_name("image/compressed")
        if own != self.resolve_topic_name("image/compressed", only_expand=True):
            return own
        return self.resolve_topic_name("image").rstrip("/") + "/compressed"

    def _image_subscription(self, msg_type, topic: str):
        """The image subscription, its QoS from the shorthands (qos_reliability, qos_depth) with
        the standard ``qos_overrides./<topic>.subscription.*`` parameters winning where set."""
        sub, self.image_qos_text = overridable_subscription(
            self, self._qos_declared, msg_type, topic, self._image_callback, self.image_qos())
        return sub

    def _destroy_inputs(self) -> None:
        for sub in self._inputs:
            self.destroy_subscription(sub)
        self._inputs = []

    def _image_callback(self, msg) -> None:
        now = time.monotonic()
        if self.worker.admit(stamp_to_ns(msg.header.stamp)):
            self.on_image(msg, now)

    def decode(self, msg):
        """Image or CompressedImage message -> BGR array (raises ImageMessageError)."""
        if isinstance(msg, CompressedImage):
            return compressed_to_bgr_msg(msg)
        return image_to_bgr(msg)

    # ---- worker ---------------------------------------------------------------------------
    def _process_newest(self, item: Any) -> None:
        model = self.model  # a reload swaps self.model; this frame keeps the one it got
        if model is None:
            raise RuntimeError(f"no model while {self.state}")
        self.process(item, model)

    def _report_failure(self, exc: Exception, bad_frame: bool) -> None:
        if isinstance(exc, UnsupportedEncodingError):
            self.refused_encoding += 1
            self.get_logger().error(f"skipping frames: {exc}", throttle_duration_sec=LOG_EVERY_S)
        elif bad_frame:
            self.get_logger().warning(f"bad frame skipped: {exc}",
                                      throttle_duration_sec=LOG_EVERY_S)
        else:
            self.get_logger().error(f"frame processing failed: {type(exc).__name__}: {exc}",
                                    throttle_duration_sec=LOG_EVERY_S)

    def processed(self, received_at: float) -> None:
        """Count a processed frame: call it BEFORE publishing the answer (see get_stats)."""
        self.acc.on_processed(time.monotonic() - received_at)

    # ---- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, params) -> SetParametersResult:
        new = dict(self.values)
        for p in params:
            spec = self.specs.get(p.name)
            if spec is None:
                continue  # rclpy's own parameters (use_sim_time, ...)
            reason = spec.check(p.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            new[p.name] = spec.normalize(p.value)  # array.array from rclpy -> list
        reason = self.check_values(new)
        # Refused when this change causes the problem; one that was there before (e.g. a
        # missing gallery at start-up) must not block fixing other parameters first.
        if reason and reason != self.check_values(self.values):
            return SetParametersResult(successful=False, reason=reason)
        changed = {k for k in new if new[k] != self.values[k]}
        if changed and self.state in ("inactive", "active"):
            try:
                # the old model keeps serving meanwhile
                model = self._logged(lambda: self.prepare_model(new, changed), new)
            except Exception as exc:  # noqa: BLE001 - reported as the rejection reason
                return SetParametersResult(
                    successful=False, reason=f"model not reloaded ({type(exc).__name__}: {exc}); "
                    "previous parameters kept")
            if model is not None:
                self.model = model
                self.reloads += 1
        for p in params:  # a valid value replaces an invalid one given at start-up
            self.param_problems.pop(p.name, None)
        self.values = new
        if changed & INPUT_KEYS and self.state == "active":
            self._destroy_inputs()
            self._create_inputs()
        if changed:
            self.get_logger().info("parameters changed: " + ", ".join(
                f"{k}={new[k]!r}" for k in sorted(changed)))
            self.on_values_changed(changed)
        return SetParametersResult(successful=True)

    # ---- diagnostics ----------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The node's counters: frame accounting, state, inputs and the subclass's values."""
        return {"state": self.state, "model": self.describe_model() if self.model else "",
                "device": self.devices_in_use, "device_requested": self.values["device"],
                "parameter_problems": self.configure_problem(),
                "inputs": [s.topic_name for s in self._inputs],
                # publishers each input has matched (0: that input is not connected yet)
                "input_publishers": [s.get_publisher_count() for s in self._inputs],
                # readers each output has matched (by topic)
                "output_subscribers": {p.topic_name: p.get_subscription_count()
                                       for p in self.publishers
                                       if isinstance(p, LifecyclePublisher)},
                **self.acc.snapshot(),
                "image_qos": self.image_qos_text,
                "skipped_by_rate": self.worker.skipped_by_rate,
                "model_errors": self.worker.model_errors, "model_reloads": self.reloads,
                "refused_encoding": self.refused_encoding,
                **self.diagnostic_values()}

    def _on_get_stats(self, request, response):
        response.success, response.message = True, json.dumps(self.stats())
        return response

    def publish_diagnostics(self) -> None:
        values = self.stats()
        warning = self.acc.loss_warning()
        if warning:
            self.get_logger().warning(warning)
        level, message = DiagnosticStatus.OK, self.state
        if self.model_error:
            level, message = DiagnosticStatus.ERROR, f"model not loaded: {self.model_error}"
        elif self.devices_in_use and \
                self.values["device"] not in self.devices_in_use.split(","):
            level = DiagnosticStatus.WARN
            message = f"device {self.values['device']} requested, running on " \
                f"{self.devices_in_use}"
        elif warning or self.worker.model_errors:
            level = DiagnosticStatus.WARN
            message = warning or f"{self.worker.model_errors} frames failed in the model"
        values.pop("inputs")
        values.pop("input_publishers")
        values.pop("output_subscribers")
        status = DiagnosticStatus(level=level, name=f"{self.get_fully_qualified_name()}: frames",
                                  message=message, hardware_id=self.get_name(),
                                  values=[KeyValue(key=k, value=_text(v))
                                          for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diag_pub.publish(msg)


def overridable_subscription(node, declared_by_prefix: dict[str, dict[str, Any]], msg_type,
                             topic: str, callback, qos: QoSProfile) -> tuple[Any, str]:
    """A subscription whose QoS ``qos`` (from the node's shorthand parameters) is overridden by
    the standard ``qos_overrides./<topic>.subscription.*`` parameters where those are set.

    rclpy declares those parameters (read-only) on the first call for a topic; later calls
    (re-created subscriptions) compare them with what was declared, kept in
    ``declared_by_prefix``. Returns the subscription and its reliability/depth/history/durability
    as text (for statistics)."""
    prefix = f"qos_overrides.{node.resolve_topic_name(topic)}.subscription."
    declared = declared_by_prefix.get(prefix)
    if declared is None:  # first subscription: rclpy declares the (read-only) parameters
        declared_by_prefix[prefix] = {k.name.lower(): _policy_value(qos, k)
                                      for k in QOS_POLICIES}
        options = QoSOverridingOptions(list(QOS_POLICIES))
    else:  # declared earlier: a value other than the declared shorthand is an override
        options = None
        for kind, convert in QOS_POLICIES.items():
            name = kind.name.lower()
            value = node.get_parameter(prefix + name).value
            if value != declared[name]:
                setattr(qos, name, value if convert is int else convert[value.upper()])
    sub = node.create_subscription(msg_type, topic, callback, qos,
                                   qos_overriding_options=options)
    return sub, "/".join(str(_policy_value(qos, k)) for k in QOS_POLICIES)


def _policy_value(qos: QoSProfile, kind: QoSPolicyKind):
    value = getattr(qos, kind.name.lower())
    return value if isinstance(value, int) and not hasattr(value, "name") else value.name.lower()


def _text(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)

