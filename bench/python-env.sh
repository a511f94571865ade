#!/usr/bin/env bash
# Creates the Python virtual environment of the bench's FastAPI baseline (bench/python/app.py):
#
#   $CXRFLOW_TOOLS/bench-venv      (CXRFLOW_TOOLS defaults to ~/.cache/cxrflow/tools)
#
# with the pinned packages of bench/python/requirements.txt (fastapi, uvicorn, onnxruntime of the
# same version as scripts/install-onnxruntime.sh, numpy, pillow), from PyPI. Idempotent: a stamp
# file in the venv holds a sha256 of the requirements and the base interpreter's version; when
# it matches, nothing is done. Prints (last line of stdout) the venv's python executable.
#
# PYTHON=python3.12 bench/python-env.sh picks another base interpreter (3.10 or newer).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
venv="$TOOLS/bench-venv"
req="$here/python/requirements.txt"
stamp="$venv/.cxrflow-requirements.sha256"
check='import fastapi, uvicorn, onnxruntime, numpy, PIL'

pyver="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
want="$({ cat "$req"; echo "python $pyver"; } | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "bench python env up to date: $venv" >&2
  echo "$venv/bin/python"
  exit 0
fi

# A venv made from another interpreter version cannot be upgraded in place: start over.
if [ -x "$venv/bin/python" ] && \
   [ "$("$venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])' 2>/dev/null || true)" != "$pyver" ]; then
  echo "recreating $venv (interpreter changed)" >&2
  rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "creating $venv with $("$PYTHON" --version 2>&1)" >&2
  mkdir -p "$TOOLS"
  rm -rf "$venv"
  "$PYTHON" -m venv "$venv"
fi
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: -r "$req" >&2
"$venv/bin/python" -c "$check"'; print("fastapi", fastapi.__version__, "uvicorn", uvicorn.__version__, "onnxruntime", onnxruntime.__version__)' >&2
echo "$want" > "$stamp"
echo "bench python env ready: $venv" >&2
echo "$venv/bin/python"
