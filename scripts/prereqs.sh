#!/usr/bin/env bash
# Installs everything cxrflow needs on a fresh Debian machine, from the package registries only,
# and skips whatever is already there: the tansu broker (crates.io), ONNX Runtime (PyPI wheel),
# the real CheXpert label file and lung masks (PyPI wheel torchxrayvision), the Python tools
# for the models, and moto's S3 server for the S3 tests (PyPI). Then source scripts/env.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
export CXRFLOW_TOOLS="$TOOLS"

if ! command -v unzip >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq unzip python3-venv >/dev/null
  else
    echo "need unzip and python3-venv (apt-get install unzip python3-venv)" >&2
    exit 1
  fi
fi

"$here/install-broker.sh"
"$here/install-onnxruntime.sh" >/dev/null
if [ "${CXRFLOW_GPU:-0}" = 1 ]; then "$here/install-onnxruntime.sh" --gpu >/dev/null; fi
"$here/fetch-chexpert-labels.sh" >/dev/null
"$here/python-env.sh" >/dev/null

# moto's S3-compatible server for the S3 tests, in its own venv; moto_server lands on PATH.
if [ ! -x "$TOOLS/bin/moto_server" ]; then
  python3 -m venv "$TOOLS/moto-venv"
  "$TOOLS/moto-venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/moto-venv/bin/moto_server" "$TOOLS/bin/moto_server"
fi
echo "prerequisites ready in $TOOLS"
