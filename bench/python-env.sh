#!/usr/bin/env bash
# Creates a Python virtual environment of the bench, through scripts/venv.sh (idempotent), and
# prints (last line of stdout) its python executable:
#
#   bench/python-env.sh          # $CXRFLOW_TOOLS/bench-venv: the FastAPI baseline
#                                # (bench/python/app.py; bench/python/requirements.txt: fastapi,
#                                # uvicorn, onnxruntime of the same version as
#                                # scripts/install-onnxruntime.sh, numpy, pillow)
#   bench/python-env.sh dicom    # $CXRFLOW_TOOLS/dicom-venv: pydicom with its decoding plugins
#                                # and OpenCV, for `cxrflow-bench pydicom-compare`
#                                # (bench/python/requirements-dicom.txt)
#
# CXRFLOW_TOOLS defaults to ~/.cache/cxrflow/tools; everything pinned, from PyPI.
# PYTHON=python3.12 bench/python-env.sh picks another base interpreter (3.10 or newer).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
case "${1:-fastapi}" in
  fastapi)
    exec "$here/../scripts/venv.sh" bench-venv 'import fastapi, uvicorn, onnxruntime, numpy, PIL' \
      "$here/python/requirements.txt" ;;
  dicom)
    exec "$here/../scripts/venv.sh" dicom-venv \
      'import pydicom, pylibjpeg, openjpeg, libjpeg, rle, gdcm, cv2, numpy, PIL' \
      "$here/python/requirements-dicom.txt" ;;
  *) echo "usage: $0 [fastapi|dicom]" >&2; exit 2 ;;
esac
