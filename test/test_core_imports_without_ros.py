"""The core library must import and list its modules with no ROS on the machine."""
import subprocess
import sys
import textwrap

from test.proc import child_env, hang_guard

BLOCK_ROS = textwrap.dedent("""
    import importlib.abc, pkgutil, sys
    BLOCKED = ("rclpy", "cv_bridge", "vision_msgs", "sensor_msgs", "std_msgs", "rosidl_runtime_py")
    class NoRos(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r} (hidden by test)")
            return None
    sys.meta_path.insert(0, NoRos())
    import face_perception
    imported = []
    for mod in pkgutil.walk_packages(face_perception.__path__, "face_perception."):
        if mod.name.startswith("face_perception.ros") or mod.name.endswith("__main__"):
            continue  # __main__ modules run a program when imported
        __import__(mod.name)
        imported.append(mod.name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(len(imported), "core modules imported")
""")


def test_core_library_imports_with_rclpy_hidden():
    out = subprocess.run([sys.executable, "-c", BLOCK_ROS], capture_output=True, text=True,
                         env=child_env(), timeout=hang_guard(300))
    assert out.returncode == 0, out.stderr
    assert "core modules imported" in out.stdout


def test_ros_layer_really_needs_rclpy():
    # Proof that the blocker works: importing the ROS layer's node module fails without rclpy.
    code = BLOCK_ROS.split("import face_perception")[0] + textwrap.dedent("""
        try:
            import rclpy
        except ModuleNotFoundError as exc:
            print("blocked:", exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=child_env(), timeout=hang_guard(120))
    assert "blocked:" in out.stdout, out.stderr
