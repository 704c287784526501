#!/usr/bin/env bash
# `make test`: colcon build + colcon test of the package against .venv, then the results.
# The package is ament_cmake (CMakeLists.txt): colcon test runs ctest, whose one test is the whole
# pytest suite; its junit file is what `colcon test-result` counts.
# Fails when any test fails or errors, or when no test ran at all.
# PYTEST_MARKERS chooses the tests (pytest -m): by default everything but the opt-in `realtime`
# tests (`make test-realtime`) and the `needs_ros_distro` ones (docs/ros.md, "Tests").
# PYTEST_ARGS adds pytest options, shell-quoted (e.g. PYTEST_ARGS="-k 'gallery or package_xml'").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACE_PERCEPTION_VENV:-$ROOT/.venv}"
cd "$ROOT"
export PATH="$VENV/bin:$PATH"
# A private DDS world for this run: loopback only, a random domain (no cross-talk between runs).
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( (RANDOM % 100) + 1 ))}"
export PYTHONDONTWRITEBYTECODE=1
# The ROS packages and CMake modules of the venv (PyPI wheels; setup_env.sh fixed their exports).
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
B=build/colcon
rm -rf "$B/build/face_perception/test_results"
colcon --log-base "$B/log" build --base-paths "$ROOT" --packages-select face_perception \
  --build-base "$B/build" --install-base "$B/install" --event-handlers console_cohesion- summary+ \
  --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DCMAKE_BUILD_TYPE=Release
status=0
# pytest's options reach it through ctest as PYTEST_ADDOPTS (shell-quoted, as pytest splits it).
PYTEST_ADDOPTS="-p no:cacheprovider -ra -m '${PYTEST_MARKERS:-not realtime and not needs_ros_distro}' ${PYTEST_ARGS:-}" \
colcon --log-base "$B/log" test --base-paths "$ROOT" --packages-select face_perception \
  --build-base "$B/build" --install-base "$B/install" \
  --event-handlers console_direct+ summary+ || status=$?
# The pytest junit file only: CTest's own Test.xml would add its one "pytest" entry to the count.
summary="$(colcon test-result --test-result-base "$B/build/face_perception/test_results" --verbose 2>&1)" \
  || status=$?
echo "$summary"
ran="$(echo "$summary" | sed -n 's/^Summary: \([0-9]*\) tests\{0,1\},.*/\1/p' | tail -1)"
if [[ -z "$ran" || "$ran" == "0" ]]; then
  echo "run_tests: no test ran" >&2
  exit 1
fi
exit "$status"
