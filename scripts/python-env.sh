#!/usr/bin/env bash
# Creates the Python virtual environment for cxrflow's model tools (models/tools/*.py):
#
#   $CXRFLOW_TOOLS/venv      (CXRFLOW_TOOLS defaults to ~/.cache/cxrflow/tools)
#
# with the pinned packages of scripts/requirements-models.txt (numpy, onnx, onnxruntime, pillow,
# scikit-learn and their dependencies; no torch) and of scripts/requirements-tests.txt (pynetdicom,
# a third-party DICOM client for the gateway's tests; onnxconverter-common for scripts/gpu-check.sh), through scripts/venv.sh (idempotent).
# Prints (last line of stdout) the venv's python executable.
#
# PYTHON=python3.12 scripts/python-env.sh picks another base interpreter (3.10 or newer).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "$here/venv.sh" venv 'import numpy, onnx, onnxruntime, PIL, sklearn, pynetdicom, skimage, opentelemetry.proto, jsonschema, onnxconverter_common' \
  "$here/requirements-models.txt" "$here/requirements-tests.txt"
