#!/usr/bin/env bash
# Creates or refreshes one of cxrflow's Python virtual environments from pinned PyPI
# requirements, and prints (last line of stdout) its python executable:
#
#   scripts/venv.sh NAME 'import a, b' REQUIREMENTS...
#
# makes $CXRFLOW_TOOLS/NAME (CXRFLOW_TOOLS defaults to ~/.cache/cxrflow/tools) with the packages
# of the REQUIREMENTS files (wheels only) and checks that the import line runs. Idempotent: a
# stamp file in the venv holds a sha256 of the requirements and the base interpreter's version;
# when it matches and the imports work, nothing is done. A venv made from another interpreter
# version is recreated. PYTHON=python3.12 picks another base interpreter (3.10 or newer).
# Callers: scripts/python-env.sh (model tools, test clients), bench/python-env.sh (FastAPI
# baseline).
set -euo pipefail

[ $# -ge 3 ] || { echo "usage: $0 NAME 'import …' REQUIREMENTS..." >&2; exit 2; }
name="$1"; check="$2"; shift 2
PYTHON="${PYTHON:-python3}"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
venv="$TOOLS/$name"
stamp="$venv/.cxrflow-requirements.sha256"

pyver="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
want="$({ cat "$@"; echo "python $pyver"; } | sha256sum | cut -d' ' -f1)"

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
   && "$venv/bin/python" -c "$check" 2>/dev/null; then
  echo "python env up to date: $venv" >&2
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
reqs=()
for r in "$@"; do reqs+=(-r "$r"); done
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${reqs[@]}" >&2
"$venv/bin/python" -c "$check"
echo "$want" > "$stamp"
echo "python env ready: $venv" >&2
echo "$venv/bin/python"
