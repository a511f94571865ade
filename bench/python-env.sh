#!/usr/bin/env bash
# Creates the Python virtual environment of the bench's FastAPI baseline (bench/python/app.py):
#
#   $CXRFLOW_TOOLS/bench-venv      (CXRFLOW_TOOLS defaults to ~/.cache/cxrflow/tools)
#
# with the pinned packages of bench/python/requirements.txt (fastapi, uvicorn, onnxruntime of the
# same version as scripts/install-onnxruntime.sh, numpy, pillow), from PyPI, through
# scripts/venv.sh (idempotent). Prints (last line of stdout) the venv's python executable.
#
# PYTHON=python3.12 bench/python-env.sh picks another base interpreter (3.10 or newer).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/../scripts/venv.sh" bench-venv 'import fastapi, uvicorn, onnxruntime, numpy, PIL' \
  "$here/python/requirements.txt"
