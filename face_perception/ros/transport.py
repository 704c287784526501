"""The shipped Fast DDS large-frame profile: where it is and how a process loads it.

Fast DDS reads its XML profile once, when the process creates its first DDS participant (inside
``rclpy.init()``/the first node), from the file named by an environment variable. So the variable
must be set before that moment: in the environment of a started process (launch files, scripts,
``profile_env``) or at the very start of our own entry points (``apply_profile``). The profile
only helps in the process that PUBLISHES large messages (docs/transport.md).

No rclpy import here: launch files and tests can use this module without starting ROS.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, MutableMapping, Optional

PACKAGE = "face_perception"
PROFILE_FILE = "fastdds_large_frames.xml"
# Fast DDS 2.x (ROS 2 Humble/Jazzy) reads the first name; Fast DDS 3.x (Kilted and later) the
# second. Setting both makes one environment work with either.
PROFILE_ENV_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
# Values of the `dds_profile` launch argument / `mode` below.
MODE_DEFAULT = "default"
MODE_OFF = "off"
# Tells face_perception's own entry points (nodes, replay) which mode their launcher chose, so that
# `dds_profile:=off` in a launch file also keeps apply_profile() in the started nodes quiet.
MODE_ENV_VAR = "FACE_PERCEPTION_DDS_PROFILE"


class TransportProfileError(ValueError):
    """The requested DDS profile does not exist or cannot be used."""


def profile_path() -> str:
    """Absolute path of the shipped profile: installed share folder first, else the source tree.

    ament_index_python is imported lazily and optional, so this works in a plain checkout too.
    """
    candidates = []
    try:
        from ament_index_python.packages import (
            PackageNotFoundError,
            get_package_share_directory,
        )
        try:
            candidates.append(Path(get_package_share_directory(PACKAGE)) / "config" / PROFILE_FILE)
        except (PackageNotFoundError, OSError):
            # OSError: AMENT_PREFIX_PATH unset (plain checkout, not sourced).
            pass
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parents[2] / "config" / PROFILE_FILE)
    for cand in candidates:
        if cand.is_file():
            return str(cand)
    raise TransportProfileError(
        f"{PROFILE_FILE} not found (looked in: {', '.join(str(c) for c in candidates)}); "
        f"is {PACKAGE} installed with its config/ folder?")


def resolve_profile(mode: Optional[str] = MODE_DEFAULT) -> Optional[str]:
    """Profile file for ``mode``: 'default' (shipped), 'off'/''/None (none), or a file path."""
    if mode is None or str(mode).strip().lower() in (MODE_OFF, "", "none", "false"):
        return None
    mode = str(mode).strip()
    if mode == MODE_DEFAULT:
        return profile_path()
    path = Path(mode).expanduser()
    if not path.is_file():
        raise TransportProfileError(
            f"DDS profile {str(path)!r} does not exist; pass 'default' for the shipped profile, "
            f"'off' for none, or the path of an existing Fast DDS XML file")
    return str(path.resolve())


def profile_env(mode: Optional[str] = MODE_DEFAULT) -> dict[str, str]:
    """Environment variables for a process to start, e.g. by a launch file.

    'default' or a path: both Fast DDS variables name the profile. 'off': no Fast DDS variable,
    only ``FACE_PERCEPTION_DDS_PROFILE=off`` so that our own nodes do not load the default
    profile by themselves (apply_profile); other programs ignore it.
    """
    path = resolve_profile(mode)
    if path is None:
        return {MODE_ENV_VAR: MODE_OFF}
    return {name: path for name in PROFILE_ENV_VARS}


def apply_profile(mode: Optional[str] = None, *, override: bool = False,
                  environ: Optional[MutableMapping[str, str]] = None) -> Optional[str]:
    """Make THIS process load the profile; call first thing in main(), before ``rclpy.init()``.

    ``mode`` None means: what ``FACE_PERCEPTION_DDS_PROFILE`` says, else 'default'. A profile
    already named by the Fast DDS variables (the user's own, or set by a launch file) wins unless
    ``override`` is true. Returns the profile file in effect, or None.
    Raises RuntimeError when rclpy was already initialised: Fast DDS would ignore the setting.
    """
    env = os.environ if environ is None else environ
    if mode is None:
        mode = env.get(MODE_ENV_VAR) or MODE_DEFAULT
    path = resolve_profile(mode)
    if path is None:
        return current_profile(env)
    chosen = current_profile(env)
    if chosen and not override:
        return chosen
    if environ is None and _rclpy_initialised():
        raise RuntimeError(
            "apply_profile() must run before rclpy.init(): Fast DDS reads "
            f"{PROFILE_ENV_VARS[0]} only when the process creates its first participant")
    for name in PROFILE_ENV_VARS:
        env[name] = path
    return path


def current_profile(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """The profile file the environment names (either variable), or None."""
    env = os.environ if environ is None else environ
    for name in PROFILE_ENV_VARS:
        if env.get(name):
            return env[name]
    return None


def _rclpy_initialised() -> bool:
    import sys
    rclpy = sys.modules.get("rclpy")
    if rclpy is None:
        return False
    try:
        return bool(rclpy.ok())
    except Exception:  # noqa: BLE001 - a half-imported rclpy means not initialised
        return False
