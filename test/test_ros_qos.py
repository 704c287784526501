"""Image subscription QoS set the standard ROS 2 way: ``qos_overrides./<topic>.subscription.*``
parameters from a params file win over the qos_reliability/qos_depth shorthands, which still
apply to what no override sets. Checked on a real face_detector process through the graph API
(what its subscription offers) and its ~/get_stats."""
from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

from test.ros_harness import (
    get_params,
    node_args,
    set_params,
    start,
    unique_ns,
    until,
    wait_stat,
)

NS = unique_ns("/qos_test")
NODE = f"{NS}/face_detector"
TOPIC = f"{NS}/image"


def offered(ros, topic: str):
    """QoS profiles of the subscriptions on ``topic`` as the ROS graph shows them."""
    return [info.qos_profile for info in ros.node.get_subscriptions_info_by_topic(topic)]


def test_params_file_override_wins_and_shorthands_still_apply(ros, tmp_path):
    params = tmp_path / "params.yaml"
    # The documented nested form of the standard override parameters.
    params.write_text(f"""/**/face_detector:
  ros__parameters:
    qos_reliability: best_effort
    qos_depth: 7
    qos_overrides:
      {TOPIC}:
        subscription:
          reliability: reliable
          durability: transient_local
""")
    proc = start("face_detector", tmp_path, node_args(NS, params))
    try:
        assert until(lambda: len(offered(ros, TOPIC)) == 1, 90, proc), proc.output()
        qos = offered(ros, TOPIC)[0]
        assert qos.reliability == ReliabilityPolicy.RELIABLE  # override, not best_effort
        assert qos.durability == DurabilityPolicy.TRANSIENT_LOCAL
        stats = wait_stat(ros, NODE, "state", "active", proc)
        # Depth is not carried by discovery: the node reports what its subscription asked for.
        assert stats["image_qos"] == "reliable/7/keep_last/transient_local"
        names = [f"qos_overrides.{TOPIC}.subscription.{p}"
                 for p in ("reliability", "depth", "history", "durability")]
        assert get_params(ros, NODE, names) == dict(zip(names, ["reliable", 7, "keep_last",
                                                                 "transient_local"]))

        # A shorthand change at run time re-creates the subscription: the new depth applies,
        # the reliability override keeps winning.
        assert set_params(ros, NODE, qos_depth=3, qos_reliability="best_effort")[0].successful
        stats = wait_stat(ros, NODE, "image_qos", "reliable/3/keep_last/transient_local", proc)
        assert until(lambda: len(offered(ros, TOPIC)) == 1, 30, proc)
        assert offered(ros, TOPIC)[0].reliability == ReliabilityPolicy.RELIABLE
        # The override parameters are read-only, as rclpy declares them.
        assert not set_params(ros, NODE, **{names[0]: "best_effort"})[0].successful
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()


def test_without_overrides_the_shorthands_set_the_qos(ros, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("/**/face_detector:\n  ros__parameters:\n    qos_depth: 2\n")
    ns = f"{NS}_plain"
    proc = start("face_detector", tmp_path, node_args(ns, params))
    try:
        assert until(lambda: len(offered(ros, f"{ns}/image")) == 1, 90, proc), proc.output()
        assert offered(ros, f"{ns}/image")[0].reliability == ReliabilityPolicy.BEST_EFFORT
        node = f"{ns}/face_detector"
        wait_stat(ros, node, "image_qos", "best_effort/2/keep_last/volatile", proc)
        assert set_params(ros, node, qos_reliability="reliable")[0].successful
        wait_stat(ros, node, "image_qos", "reliable/2/keep_last/volatile", proc)
        assert until(lambda: [q.reliability for q in offered(ros, f"{ns}/image")]
                     == [ReliabilityPolicy.RELIABLE], 30, proc)
    finally:
        assert proc.stop() in (0, -2), proc.log_path.read_text()
