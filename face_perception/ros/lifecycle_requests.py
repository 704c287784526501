"""Lifecycle requests from any client answered, never fatal to the node process."""
from __future__ import annotations


def answer_every_change_state(node) -> None:
    """Make ``node`` (an rclpy LifecycleNode) answer every ``~/change_state`` request.

    rclpy's handler triggers a transition given by id without checking that the current
    state offers it: configure by id while active (what nav2's lifecycle manager sends to
    an autostarted node) raises RCLError out of the service callback and ends the process.
    The service's callback is wrapped: an unavailable transition is refused (success=false,
    state unchanged, a warning saying which transitions are available).
    """
    service = node._service_change_state  # created by rclpy's LifecycleNodeMixin
    handle = service.callback

    def change_state(request, response):
        wanted = request.transition
        available = node._state_machine.available_transitions
        # As rclpy does: a label, when given, names the transition; else the id does.
        ok = any((t[1] == wanted.label) if wanted.label else (t[0] == wanted.id)
                 for t in available)
        current = node._state_machine.current_state[1]
        asked = repr(wanted.label) if wanted.label else f"id {wanted.id}"
        if not ok:
            node.get_logger().warning(
                f"lifecycle transition {asked} refused: not available "
                f"while {current} (available: "
                f"{', '.join(f'{t[1]} ({t[0]})' for t in available) or 'none'})")
            response.success = False
            return response
        try:
            return handle(request, response)
        except Exception as exc:  # noqa: BLE001 - a request must never end the node
            node.get_logger().error(f"lifecycle transition {asked} failed: "
                                    f"{type(exc).__name__}: {exc}")
            response.success = False
            return response

    service.callback = change_state
