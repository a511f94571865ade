#!/usr/bin/env bash
# The test command: installs prerequisites (skipping what is there), builds once, generates the
# synthetic dataset and the models (cached by input hash), then runs every test with nextest
# against real brokers, real ONNX Runtime sessions, real files and a real S3-compatible server.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
"$here/prereqs.sh"
# shellcheck disable=SC1091
. "$here/env.sh"
"$here/make-test-data.sh"
# shellcheck disable=SC1091
. "$CXRFLOW_DATA/test-data.env"
cargo nextest run --workspace --no-fail-fast "$@"
