"""Benchmark: do camera-sized sensor_msgs/Image frames reach a subscriber in another process?

For each frame size, DDS profile and publisher/subscriber reliability pair it starts two plain rclpy
processes: a publisher that sends bgr8 frames at a fixed rate, and a trivial echo node that
answers every frame it receives with the frame's header on a small reliable topic. The publisher
counts the answers: delivery % and publish-to-answer latency (p50/p95). Prints one table.

    .venv/bin/python benchmarks/transport.py            # 3 sizes, 3 s per run (about 4 min)
    .venv/bin/python benchmarks/transport.py --quick    # 2 sizes, 1 s per run (about 1.5 min)

Profiles: "off" = Fast DDS built-in transports in both processes; "both" = the shipped
config/fastdds_large_frames.xml in both; "sub only" / "pub only" = in one process only.
Uses ROS_DOMAIN_ID / ROS_AUTOMATIC_DISCOVERY_RANGE from the environment, defaulting to a random
domain on loopback so that runs never disturb (or hear) other DDS traffic.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

SIZES = {"640x480": (640, 480), "1280x720": (1280, 720), "1920x1080": (1920, 1080)}
BE, REL = "best_effort", "reliable"
SHORT = {BE: "BE", REL: "REL"}
DEPTH = 5  # keep-last depth on both sides, like the sensor-data profile


# --------------------------------------------------------------------------- child roles
def qos(reliability: str, depth: int = DEPTH):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    rel = ReliabilityPolicy.BEST_EFFORT if reliability == BE else ReliabilityPolicy.RELIABLE
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=rel,
                      durability=DurabilityPolicy.VOLATILE)


def run_echo(args) -> int:
    """Answer every received image with its header: proves arrival at negligible cost."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    rclpy.init()
    node = rclpy.create_node("transport_echo")
    reply = node.create_publisher(Header, args.reply_topic, qos(REL, 100))
    node.create_subscription(Image, args.topic, lambda msg: reply.publish(msg.header),
                             qos(args.reliability))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def run_publisher(args) -> int:
    """Publish frames at a fixed rate, collect the echo's answers, print one JSON result line."""
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    rclpy.init()
    node = rclpy.create_node("transport_publisher")
    pub = node.create_publisher(Image, args.topic, qos(args.reliability))
    sent_at: dict[int, float] = {}
    answered: dict[int, float] = {}
    lock = threading.Lock()

    def on_reply(msg):
        now = time.monotonic()
        key = msg.stamp.sec * 1_000_000_000 + msg.stamp.nanosec
        with lock:
            if key in sent_at and key not in answered:
                answered[key] = now - sent_at[key]

    node.create_subscription(Header, args.reply_topic, on_reply, qos(REL, 100))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()

    result = {"sent": 0, "answered": 0, "matched": False, "latencies_ms": []}
    deadline = time.monotonic() + args.match_timeout
    while time.monotonic() < deadline and not (
            pub.get_subscription_count() > 0 and node.count_publishers(args.reply_topic) > 0):
        time.sleep(0.02)
    result["matched"] = pub.get_subscription_count() > 0
    if result["matched"]:
        time.sleep(0.5)  # let discovery settle on both sides (SHM ports, reply reader)
        msg = Image(height=args.height, width=args.width, encoding="bgr8", is_bigendian=0,
                    step=args.width * 3)
        msg.header.frame_id = "camera"
        frame = np.zeros((args.height, args.width, 3), np.uint8)
        frame[::8, ::8] = 200  # not all zeros; DDS does not compress anyway
        msg.data = frame.tobytes()
        period = 1.0 / args.rate
        count = int(round(args.seconds * args.rate))
        start = time.monotonic()
        for i in range(count):
            target = start + i * period
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamp_ns = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            with lock:
                sent_at[stamp_ns] = time.monotonic()
            pub.publish(msg)
        result["sent"] = count
        drain = time.monotonic() + args.drain
        while time.monotonic() < drain:
            with lock:
                if len(answered) >= count:
                    break
            time.sleep(0.02)
    with lock:
        result["answered"] = len(answered)
        result["latencies_ms"] = sorted(1000.0 * v for v in answered.values())
    executor.shutdown(timeout_sec=1.0)
    node.destroy_node()
    rclpy.try_shutdown()
    print("RESULT " + json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------- orchestration
def child_env(with_profile: bool, profile: str = "default") -> dict[str, str]:
    from face_perception.ros.transport import PROFILE_ENV_VARS, profile_env
    env = dict(os.environ)
    for name in PROFILE_ENV_VARS:
        env.pop(name, None)  # a profile set by the user must not leak into "off" runs
    if with_profile:
        env.update(profile_env(profile))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, max(0, int(round(q * (len(sorted_values) - 1)))))
    return sorted_values[idx]


def run_case(size: str, profile: str, pub_rel: str, sub_rel: str, args, run_id: int) -> dict:
    width, height = SIZES[size]
    topic, reply_topic = f"bench_{run_id}/image", f"bench_{run_id}/echo"
    me = [sys.executable, str(Path(__file__).resolve())]
    echo = subprocess.Popen(
        me + ["--role", "echo", "--topic", topic, "--reply-topic", reply_topic,
              "--reliability", sub_rel],
        env=child_env(profile in ("both", "sub only"), args.profile), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    try:
        match_timeout = 3.0 if (pub_rel, sub_rel) == (BE, REL) else 20.0
        out = subprocess.run(
            me + ["--role", "publisher", "--topic", topic, "--reply-topic", reply_topic,
                  "--reliability", pub_rel, "--width", str(width), "--height", str(height),
                  "--rate", str(args.rate), "--seconds", str(args.seconds),
                  "--match-timeout", str(match_timeout), "--drain", "1.5"],
            env=child_env(profile in ("both", "pub only"), args.profile), capture_output=True,
            text=True, timeout=120)
    finally:
        # SIGINT: rclpy shuts down cleanly and Fast DDS removes its /dev/shm segment (a killed
        # process leaves its 32 MiB segment behind until `fastdds shm clean` or a reboot).
        echo.send_signal(signal.SIGINT)
        try:
            echo.wait(15)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait(5)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"publisher for {size}/{profile}/{pub_rel}->{sub_rel} printed no "
                           f"result (exit {out.returncode}):\n{out.stderr[-2000:]}")
    res = json.loads(lines[-1][len("RESULT "):])
    res.update(size=size, profile=profile, pub=pub_rel, sub=sub_rel)
    return res


def cases(args) -> list[tuple[str, str, str, str]]:
    sizes = ["640x480", "1280x720"] if args.quick else list(SIZES)
    out = []
    for size in sizes:
        for profile in ("off", "both"):
            for pub_rel, sub_rel in ((BE, BE), (REL, BE), (REL, REL)):
                out.append((size, profile, pub_rel, sub_rel))
        if not args.quick:
            out.append((size, "sub only", BE, BE))
            out.append((size, "pub only", BE, BE))
    # Best-effort writer, reliable reader: DDS refuses to match them. Checked once, for real.
    out.append((sizes[0], "off", BE, REL))
    return out


def fmt_row(r: dict) -> str:
    pair = f"{SHORT[r['pub']]}->{SHORT[r['sub']]}"
    if not r["matched"]:
        return f"| {r['size']:9} | {r['profile']:8} | {pair:8} | no match (incompatible QoS) " \
               f"| - | - | - |"
    lat = r["latencies_ms"]
    pct = 100.0 * r["answered"] / r["sent"] if r["sent"] else 0.0
    return (f"| {r['size']:9} | {r['profile']:8} | {pair:8} | {r['answered']:4d} / {r['sent']:<4d}"
            f" | {pct:5.1f} | {percentile(lat, 0.5):7.1f} | {percentile(lat, 0.95):7.1f} |")


def orchestrate(args) -> int:
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    todo = cases(args)
    from face_perception.ros.transport import resolve_profile
    print(f"profile: {resolve_profile(args.profile)}")
    print(f"transport benchmark: {len(todo)} runs, {args.seconds:g} s of bgr8 frames at "
          f"{args.rate:g} Hz each, domain {os.environ['ROS_DOMAIN_ID']}, "
          f"depth {DEPTH} both sides", flush=True)
    t0 = time.monotonic()
    rows = []
    for i, case in enumerate(todo):
        rows.append(run_case(*case, args=args, run_id=os.getpid() * 100 + i))
        print("  " + fmt_row(rows[-1]), flush=True)
    print()
    print("| size      | profile  | QoS      | answered    |     % | p50 ms  | p95 ms  |")
    print("|-----------|----------|----------|-------------|-------|---------|---------|")
    for r in rows:
        print(fmt_row(r))
    print()
    print("profile: off = Fast DDS built-in transports; both / pub only / sub only = "
          "config/fastdds_large_frames.xml loaded in those processes. QoS: publisher->subscriber "
          "reliability. Latency: publish to the echo's answer (includes the small answer message).")
    # Ratios: how much the profile changes delivery for the sensor-data case.
    for size in dict.fromkeys(r["size"] for r in rows):
        off = next((r for r in rows if (r["size"], r["profile"], r["pub"], r["sub"])
                    == (size, "off", BE, BE)), None)
        on = next((r for r in rows if (r["size"], r["profile"], r["pub"], r["sub"])
                   == (size, "both", BE, BE)), None)
        if off and on and off["answered"]:
            print(f"{size}: best-effort delivery with profile / without = "
                  f"{on['answered'] / off['answered']:.2f}x")
    print(f"total {time.monotonic() - t0:.0f} s")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 sizes, 1 s per run")
    ap.add_argument("--seconds", type=float, default=None, help="frames per run, in seconds")
    ap.add_argument("--rate", type=float, default=30.0, help="frame rate in Hz (default 30)")
    ap.add_argument("--profile", default="default",
                    help="Fast DDS XML file for the 'with profile' rows (default: the shipped one)")
    # Internal: the two child roles.
    ap.add_argument("--role", choices=("echo", "publisher"), help=argparse.SUPPRESS)
    ap.add_argument("--topic", help=argparse.SUPPRESS)
    ap.add_argument("--reply-topic", help=argparse.SUPPRESS)
    ap.add_argument("--reliability", choices=(BE, REL), default=BE, help=argparse.SUPPRESS)
    ap.add_argument("--width", type=int, default=640, help=argparse.SUPPRESS)
    ap.add_argument("--height", type=int, default=480, help=argparse.SUPPRESS)
    ap.add_argument("--match-timeout", type=float, default=20.0, help=argparse.SUPPRESS)
    ap.add_argument("--drain", type=float, default=1.5, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.quick else 3.0
    if args.role == "echo":
        return run_echo(args)
    if args.role == "publisher":
        return run_publisher(args)
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
