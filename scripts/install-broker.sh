#!/usr/bin/env bash
# Installs the embedded Kafka-API broker (tansu) used by `cxrflow up` and the test suite.
# Skips the build when the pinned version is already on PATH or in $CXRFLOW_TOOLS/bin.
set -euo pipefail
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
mkdir -p "$TOOLS"
if [ -x "$TOOLS/bin/tansu" ] && "$TOOLS/bin/tansu" --version 2>/dev/null | grep "$TANSU_VERSION" >/dev/null; then
  echo "tansu $TANSU_VERSION already installed at $TOOLS/bin/tansu"
  exit 0
fi
echo "building tansu $TANSU_VERSION into $TOOLS (about 9 minutes on 2 cores)"
cargo install --locked --root "$TOOLS" tansu --version "$TANSU_VERSION" --features libsql,dynostore \
  || cargo install --root "$TOOLS" tansu --version "$TANSU_VERSION" --features libsql,dynostore
"$TOOLS/bin/tansu" --version
