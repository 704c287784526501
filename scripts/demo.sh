#!/usr/bin/env bash
# `make demo`: the main job on the shipped real photos. Writes results under demo_output/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${FACE_PERCEPTION_VENV:-$ROOT/.venv}"
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
PY="$VENV/bin/python"
"$PY" scripts/demo.py
