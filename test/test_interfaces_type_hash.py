"""face_perception_interfaces: the built service and action types are the .srv and .action
files of interfaces/, and their RIHS01 type hashes are pinned (a change of such a file is a wire
change: bump them on purpose).

Each hash is computed here from the repository's files with rosidl's own hashing (rosidl_adapter
srv/action -> idl, rosidl_generator_type_description), compared with the pinned value, and the
types built into the venv are checked against it through the ROS graph (a publisher's
topic_type_hash comes from the C type support that was compiled).
"""
import contextlib
import io
import json
import re
import sys
from pathlib import Path

import pytest
import rclpy

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "interfaces/face_perception_interfaces"
PINNED = {
    "EnrollIdentity":
        "RIHS01_64721e58912e192684339a23afbdf841eb64c7ad8078b0f764dcf11a1f3471d1",
    "EnrollIdentity_Request":
        "RIHS01_81ca5e411ef8a08f8b496f51544305f423e91e46c5f5615182a1c6f06245e47d",
    "EnrollIdentity_Response":
        "RIHS01_d48546736ba995915cb1d68d4bff78f42cc0bf1aba5057994e8b1a09168187dc",
    "ForgetIdentity":
        "RIHS01_1ae53c976b33112a4ea2200a0f812ce96b6440637aa1355ae5f98c1352c7b1ba",
    "ForgetIdentity_Request":
        "RIHS01_5cfe656f214a3033a1ac3293e6da0f0d2c62805996f090d4b471fb4215217210",
    "ForgetIdentity_Response":
        "RIHS01_153fb496428618deb5903f759c725c42b0ae1a2206d129adaa9cb3a5897dcefc",
    "ListIdentities":
        "RIHS01_7f478c3c4dd15fb25dc0e76f13890ac855c8efadccb774e4e71ee680fecb8bb7",
    "ListIdentities_Request":
        "RIHS01_ef808953b36e6f3f8c84a14b3191d93129379284fecf0f220f386c01b4661eba",
    "ListIdentities_Response":
        "RIHS01_ef1f1548b92a8601b1a3c6bca77bfa956d2c5a98bc096d31c6c4b6c26815821b",
}
PINNED_ACTIONS = {
    "Enroll":
        "RIHS01_4998de4e2e33549b06432664aa5c4bba05f401c862e4122878f76502b58bb0d6",
    "Enroll_Goal":
        "RIHS01_49ecf0e1e8793955e91508e11703e3f1b342da198485d69165f50aa31f0f26bd",
    "Enroll_Result":
        "RIHS01_14e7255948172ec4571c830e947f7364bf0f5dd34f0c115114fe9f75c7efde94",
    "Enroll_Feedback":
        "RIHS01_2bfe6ddb43b1d74b4193f31025ee0067d3969945e66cc0b97df70bb256c84321",
    "Enroll_FeedbackMessage":
        "RIHS01_ba9ed39e81aa77148222429494759f94ec0da14aad8e30f67c76d40e3f1eb482",
}
SERVICES = sorted(k for k in PINNED if "_" not in k)
ACTIONS = sorted(k for k in PINNED_ACTIONS if "_" not in k)


@pytest.fixture(scope="module")
def rosidl_hashes(tmp_path_factory):
    """type name -> RIHS01 hash, computed by rosidl from the repository's .srv files."""
    from rosidl_adapter.action import convert_action_to_idl
    from rosidl_adapter.srv import convert_srv_to_idl
    from rosidl_generator_type_description import generate_type_hash

    out = tmp_path_factory.mktemp("idl")
    share = Path(sys.prefix) / "share"
    tuples = []
    for srv in sorted((PACKAGE / "srv").glob("*.srv")):
        # rosidl_adapter prints progress and its template engine needs the real stdout.
        convert_srv_to_idl(PACKAGE, PACKAGE.name, srv.relative_to(PACKAGE), out / "srv")
        tuples.append(f"{out}:srv/{srv.stem}.idl")
    for action in sorted((PACKAGE / "action").glob("*.action")):
        convert_action_to_idl(PACKAGE, PACKAGE.name, action.relative_to(PACKAGE),
                              out / "action")
        tuples.append(f"{out}:action/{action.stem}.idl")
    args = out / "args.json"
    args.write_text(json.dumps({
        "package_name": PACKAGE.name, "output_dir": str(out / "gen"), "idl_tuples": tuples,
        "include_paths": [f"{p}:{share / p}" for p in (
            "builtin_interfaces", "service_msgs", "action_msgs", "unique_identifier_msgs")]}))
    with contextlib.redirect_stderr(io.StringIO()):
        generate_type_hash(str(args))
    hashes = {}
    for f in [*(out / "gen/srv").glob("*.json"), *(out / "gen/action").glob("*.json")]:
        for entry in json.loads(f.read_text())["type_hashes"]:
            pkg, _, name = entry["type_name"].split("/")
            if pkg == PACKAGE.name:
                hashes[name] = entry["hash_string"]
    return hashes


def test_package_builds_exactly_the_srv_and_action_files():
    srv_dir = PACKAGE / "srv"
    assert sorted(p.stem for p in srv_dir.glob("*.srv")) == SERVICES
    assert sorted(p.stem for p in (PACKAGE / "action").glob("*.action")) == ACTIONS
    cmake = (PACKAGE / "CMakeLists.txt").read_text()
    assert sorted(re.findall(r'"srv/(\w+)\.srv"', cmake)) == SERVICES
    assert sorted(re.findall(r'"action/(\w+)\.action"', cmake)) == ACTIONS
    # A ROS workspace builds this package; vision_msgs and hri_msgs come from the distro there.
    assert not (PACKAGE / "COLCON_IGNORE").exists()
    assert not (REPO / "interfaces/COLCON_IGNORE").exists()
    for name in ("vision_msgs", "hri_msgs"):
        assert (REPO / "interfaces" / name / "COLCON_IGNORE").is_file()
    package_xml = (REPO / "package.xml").read_text()
    assert "<exec_depend>face_perception_interfaces</exec_depend>" in package_xml


def test_rosidl_hashes_of_the_srv_and_action_files_are_the_pinned_ones(rosidl_hashes):
    assert {k: v for k, v in rosidl_hashes.items() if k in PINNED} == PINNED
    assert {k: v for k, v in rosidl_hashes.items() if k in PINNED_ACTIONS} == PINNED_ACTIONS
    # Nothing unpinned besides the types rosidl derives (service events, the action's
    # SendGoal/GetResult services).
    assert all(k in PINNED or k in PINNED_ACTIONS or k.endswith("_Event")
               or re.fullmatch(r"\w+_(SendGoal|GetResult)(_Request|_Response)?", k)
               for k in rosidl_hashes), sorted(rosidl_hashes)


@pytest.mark.parametrize("name", sorted(k for k in PINNED if "_" in k))
def test_built_type_hash_equals_rosidl_hash(name, rosidl_hashes):
    import face_perception_interfaces.srv as srv

    service, part = name.split("_")
    msg_type = getattr(getattr(srv, service), part)
    rclpy.init()
    try:
        node = rclpy.create_node("fpi_type_hash_probe")
        node.create_publisher(msg_type, "fpi_type_hash_probe", 1)
        (info,) = node.get_publishers_info_by_topic("fpi_type_hash_probe")
        assert str(info.topic_type_hash) == rosidl_hashes[name] == PINNED[name]
        node.destroy_node()
    finally:
        rclpy.shutdown()


@pytest.mark.parametrize("name", sorted(k for k in PINNED_ACTIONS if "_" in k))
def test_built_action_type_hash_equals_rosidl_hash(name, rosidl_hashes):
    from face_perception.ros.interface_types import Enroll

    part = name.split("_", 1)[1]
    msg_type = getattr(Enroll.Impl, part) if part == "FeedbackMessage" else getattr(Enroll, part)
    rclpy.init()
    try:
        node = rclpy.create_node("fpi_action_hash_probe")
        node.create_publisher(msg_type, "fpi_action_hash_probe", 1)
        (info,) = node.get_publishers_info_by_topic("fpi_action_hash_probe")
        assert str(info.topic_type_hash) == rosidl_hashes[name] == PINNED_ACTIONS[name]
        node.destroy_node()
    finally:
        rclpy.shutdown()
