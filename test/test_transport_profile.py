"""The shipped Fast DDS profile: found with or without ament_index, well-formed, and applied
through the environment (delivery between real processes: test_transport_delivery.py)."""
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from face_perception.ros import transport
from face_perception.ros.transport import (
    PROFILE_ENV_VARS,
    TransportProfileError,
    apply_profile,
    profile_env,
    profile_path,
)

NS = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}


def test_profile_path_finds_the_shipped_file(repo_root):
    path = Path(profile_path())
    assert path.is_file() and path.name == "fastdds_large_frames.xml"
    assert path.read_bytes() == (repo_root / "config/fastdds_large_frames.xml").read_bytes()


def test_profile_is_a_32mib_shm_plus_udp_default_participant():
    root = ET.parse(profile_path()).getroot()
    descriptors = {d.find("f:transport_id", NS).text: d
                   for d in root.iterfind(".//f:transport_descriptor", NS)}
    kinds = {tid: d.find("f:type", NS).text for tid, d in descriptors.items()}
    assert sorted(kinds.values()) == ["SHM", "UDPv4"]
    shm = next(d for d in descriptors.values() if d.find("f:type", NS).text == "SHM")
    assert int(shm.find("f:segment_size", NS).text) == 32 * 1024 * 1024
    (participant,) = root.iterfind(".//f:participant", NS)
    assert participant.get("is_default_profile") == "true"
    rtps = participant.find("f:rtps", NS)
    assert rtps.find("f:useBuiltinTransports", NS).text == "false"
    used = [t.text for t in rtps.iterfind("f:userTransports/f:transport_id", NS)]
    assert sorted(used) == sorted(descriptors)


def test_profile_env_sets_both_fast_dds_variables():
    env = profile_env("default")
    assert set(env) == {"FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE"}
    assert set(env.values()) == {profile_path()}
    # 'off': no Fast DDS variable, only the note that keeps our own nodes from applying it.
    assert profile_env("off") == {"FACE_PERCEPTION_DDS_PROFILE": "off"}
    assert profile_env(None) == {"FACE_PERCEPTION_DDS_PROFILE": "off"}


def test_profile_env_accepts_a_users_own_file(tmp_path):
    own = tmp_path / "my_camera_profile.xml"
    own.write_text("<dds/>")
    assert set(profile_env(str(own)).values()) == {str(own.resolve())}


def test_profile_env_refuses_a_missing_file(tmp_path):
    missing = tmp_path / "nope.xml"
    with pytest.raises(TransportProfileError, match="nope.xml"):
        profile_env(str(missing))


def test_apply_profile_keeps_the_users_choice_unless_told_to_override(tmp_path):
    env = {}
    assert apply_profile("default", environ=env) == profile_path()
    assert all(env[name] == profile_path() for name in PROFILE_ENV_VARS)
    own = tmp_path / "own.xml"
    own.write_text("<dds/>")
    user_env = {"FASTRTPS_DEFAULT_PROFILES_FILE": str(own)}
    assert apply_profile("default", environ=user_env) == str(own)
    assert apply_profile("default", environ=user_env, override=True) == profile_path()
    assert apply_profile("off", environ={}) is None


def test_apply_profile_follows_the_launchers_choice():
    # A launch file with dds_profile:=off starts our node with profile_env('off'): the node's own
    # apply_profile() call then leaves Fast DDS alone.
    env = dict(profile_env("off"))
    assert apply_profile(environ=env) is None
    assert not any(name in env for name in PROFILE_ENV_VARS)
    # Started with no hint at all (plain `ros2 run`): the shipped profile.
    env = {}
    assert apply_profile(environ=env) == profile_path()
    # Started by a launch file with the default: already set, kept as is.
    env = dict(profile_env("default"))
    assert apply_profile(environ=env) == profile_path()


def test_profile_path_works_without_ament_index(monkeypatch, repo_root):
    import builtins
    real_import = builtins.__import__

    def no_ament(name, *args, **kwargs):
        if name.startswith("ament_index_python"):
            raise ImportError("hidden by test")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ament)
    assert Path(transport.profile_path()) == repo_root / "config/fastdds_large_frames.xml"


def test_apply_profile_refuses_after_rclpy_init(monkeypatch):
    import rclpy
    for name in PROFILE_ENV_VARS:  # restored after the test, whatever happens
        monkeypatch.delenv(name, raising=False)
    rclpy.init()
    try:
        with pytest.raises(RuntimeError, match="before rclpy.init"):
            apply_profile("default", override=True)
    finally:
        rclpy.shutdown()
