"""Header stamps (builtin_interfaces/Time: ``sec``, ``nanosec``) as one integer of nanoseconds.

ROS-free: works on rclpy messages and on rosbags' deserialised ones alike.
"""
from __future__ import annotations

NS_PER_SECOND = 1_000_000_000


def stamp_to_ns(stamp) -> int:
    """A stamp-like object (``.sec``, ``.nanosec``; e.g. ``msg.header.stamp``) -> nanoseconds."""
    return int(stamp.sec) * NS_PER_SECOND + int(stamp.nanosec)


def ns_to_sec_nanosec(stamp_ns: int) -> tuple[int, int]:
    """Nanoseconds -> the (sec, nanosec) fields of a stamp."""
    sec, nanosec = divmod(int(stamp_ns), NS_PER_SECOND)
    return sec, nanosec
