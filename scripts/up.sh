#!/usr/bin/env bash
# The main job on the embedded default: installs prerequisites (skipping what is there),
# builds, synthesizes the CheXpert-format dataset and fits the model (cached), then runs
# `cxrflow up`: broker on loopback with on-disk storage, blob store and stores under .cxrflow/,
# every service as a task, the replay, the simulated readers, and the report.
# Extra arguments go to `cxrflow up` (e.g. --studies 300, --keep-running).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
"$here/prereqs.sh"
# shellcheck disable=SC1091
. "$here/env.sh"
"$here/make-test-data.sh"
# shellcheck disable=SC1091
. "$CXRFLOW_DATA/test-data.env"
exec "$CXRFLOW_BIN" up --dataset "$CXRFLOW_DATASET_ROOT" --models-dir "$CXRFLOW_MODELS_DIR" "$@"
