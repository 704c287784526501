#!/usr/bin/env bash
# One set-up for everything (README, Makefile, CI): creates .venv with the pinned dependencies and,
# where no ROS 2 distro provides them, builds the interface packages vision_msgs and hri_msgs
# from interfaces/ into the venv, and always our own face_perception_interfaces.
# Idempotent: a stamp file keyed on the inputs' checksum makes a second run a no-op.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACE_PERCEPTION_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
STAMP="$VENV/.face_perception_setup"

inputs_sum() {
  cat "$ROOT/scripts/requirements.txt" "$ROOT/scripts/setup_env.sh" "$ROOT/setup.py" "$ROOT/setup.cfg" \
      "$ROOT"/interfaces/*/msg/*.msg "$ROOT"/interfaces/*/srv/*.srv "$ROOT"/interfaces/*/action/*.action \
      "$ROOT"/interfaces/*/CMakeLists.txt \
    | sha256sum | cut -d' ' -f1
}
WANT="$(inputs_sum)"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$VENV/bin/python" \
      && -x "$VENV/bin/face-perception" ]]; then
  echo "setup_env: $VENV is up to date"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "setup_env: creating $VENV"
  "$PY" -m venv "$VENV"
fi
echo "setup_env: installing pinned dependencies (first run takes a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$ROOT/scripts/requirements.txt" 2>&1 \
  | grep -v "is ignored: it is neither a file nor a directory" || true
"$VENV/bin/python" -m pip check >/dev/null 2>&1 || true

# Interface packages: use a sourced ROS 2 distro's package when there is one; otherwise build ours
# from interfaces/<name> (cmake + make install into the venv), once per change of its sources.
have_interface() {
  local py="$VENV/bin/python"
  env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$py" -c "import $1.msg" >/dev/null 2>&1 \
    || env -u _ROS_WHEELS_BOOTSTRAP_COMPLETE "$py" -c "import $1.srv" >/dev/null 2>&1
}
interface_sum() {
  local files
  files="$(shopt -s nullglob; echo "$ROOT/interfaces/$1"/msg/*.msg "$ROOT/interfaces/$1"/srv/*.srv \
    "$ROOT/interfaces/$1"/action/*.action)"
  # shellcheck disable=SC2086  # the interface file names have no spaces
  cat $files "$ROOT/interfaces/$1/CMakeLists.txt" | sha256sum | cut -d' ' -f1
}
cmake_exports_fixed=""
build_interface() {
  local name="$1" sum build
  sum="$(interface_sum "$name")"
  if [[ -n "${ROS_DISTRO:-}" ]] && { python3 -c "import $name.msg" >/dev/null 2>&1 \
        || python3 -c "import $name.srv" >/dev/null 2>&1; }; then
    echo "setup_env: using $name from ROS $ROS_DISTRO"
    return
  fi
  if have_interface "$name" && [[ -f "$VENV/share/$name/.face_perception_build" && \
        "$(cat "$VENV/share/$name/.face_perception_build")" == "$sum" ]]; then
    echo "setup_env: $name already built"
    return
  fi
  echo "setup_env: building $name from interfaces/$name"
  if [[ -z "$cmake_exports_fixed" ]]; then
    local pyinc npinc
    pyinc="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    npinc="$("$VENV/bin/python" -c 'import numpy; print(numpy.get_include())')"
    # The wheels' CMake exports name the build machine's Python and numpy include dirs.
    find "$VENV/share" -path '*/cmake/*.cmake' -type f -print0 \
      | xargs -0 -r grep -lZ '/opt/python/cp311-cp311' 2>/dev/null \
      | xargs -0 -r sed -i \
          -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" \
          -e "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g" || true
    cmake_exports_fixed=1
  fi
  build="$(mktemp -d)"
  (
    export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    export PATH="$VENV/bin:$PATH"
    cmake -S "$ROOT/interfaces/$name" -B "$build" -DCMAKE_INSTALL_PREFIX="$VENV" \
      -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF -DCMAKE_BUILD_TYPE=Release \
      > "$build/cmake.log" 2>&1 || { cat "$build/cmake.log"; exit 1; }
    make -C "$build" -j"$(nproc)" install > "$build/make.log" 2>&1 || { tail -50 "$build/make.log"; exit 1; }
  ) || { rm -rf "$build"; exit 1; }
  rm -rf "$build"
  echo "$sum" > "$VENV/share/$name/.face_perception_build"
  have_interface "$name" || { echo "setup_env: $name built but not importable" >&2; exit 1; }
}
# hri_msgs after vision_msgs: both need only the wheels' std_msgs/geometry_msgs.
build_interface vision_msgs
build_interface hri_msgs
# tf2_msgs (the face_hri_bridge's /tf frames): no wheel exists; only TFMessage, from interfaces/.
build_interface tf2_msgs
# Ours (the recognizer's gallery services): no distro has it; a ROS workspace builds it with
# colcon like any ament_cmake package (README), and a sourced workspace that has it wins.
build_interface face_perception_interfaces

# Real face photos for tests and the demo: the MIT-licensed test images of the face_recognition
# sdist (obama x3, biden, partial faces). Only the pictures are kept, not its code.
PHOTOS="$VENV/share/face_perception/test_images"
if [[ ! -f "$PHOTOS/biden.jpg" ]]; then
  echo "setup_env: fetching test photos (face_recognition 1.3.0 sdist)"
  DL="$(mktemp -d)"
  "$VENV/bin/python" -m pip download -q --no-deps --no-binary=:all: -d "$DL" face-recognition==1.3.0 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  mkdir -p "$PHOTOS"
  tar -xzf "$DL"/face_recognition-1.3.0.tar.gz -C "$DL"
  cp "$DL"/face_recognition-1.3.0/tests/test_images/* "$PHOTOS"/
  rm -rf "$DL"
fi
touch "$VENV/COLCON_IGNORE"

# The package itself, in development mode: `.venv/bin/face-perception`, `face_detector`,
# `face_recognizer`, ... work from any folder and run this source tree's code.
echo "setup_env: installing face_perception (editable) into $VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation \
  -e "$ROOT" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
for script in face-perception face_detector face_recognizer; do
  [[ -x "$VENV/bin/$script" ]] || { echo "setup_env: $VENV/bin/$script missing after install" >&2; exit 1; }
done

echo "$WANT" > "$STAMP"
echo "setup_env: done ($VENV)"
