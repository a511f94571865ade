#!/usr/bin/env bash
# Runs cxrflow's performance bench (bench/, issue 10's performance part) and writes
# target/bench/pipeline.json plus a markdown table on stdout:
#
#   scripts/bench.sh --quick        # a few minutes: fewer layouts, 20 s runs, 15 s burst
#   scripts/bench.sh                # full: 60 s runs, a 60 s overload burst
#   scripts/bench.sh --burst-s 30   # any cxrflow-bench flag passes through (--help lists them)
#   scripts/bench.sh pydicom-compare  # preprocess against pydicom + OpenCV on full-size DICOM,
#                                     # target/bench/pydicom-compare.json (≈5 min)
#
# Builds the umbrella binary and the bench in release, prepares the FastAPI baseline's venv
# (bench/python-env.sh, from PyPI), the ONNX Runtime library, the broker, the DenseNet-121 model
# and the replay dataset when they are missing, then runs target/release/cxrflow-bench (under
# $CARGO_TARGET_DIR when set).
# Run it on an otherwise idle machine: every figure is wall-clock throughput or latency.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

# shellcheck source=scripts/env.sh
. "$here/env.sh"
[ -f "${ORT_DYLIB_PATH:-}" ] || ORT_DYLIB_PATH="$("$here/install-onnxruntime.sh" | tail -n1)"
export ORT_DYLIB_PATH
# The patched broker (a no-op when it is installed; a published tansu would hold every fetch).
"$here/install-broker.sh" >&2

data_env="$CXRFLOW_DATA/test-data.env"
if [ -z "${CXRFLOW_DATASET_ROOT:-}" ]; then
  [ -f "$data_env" ] || "$here/make-test-data.sh" >&2
  # shellcheck disable=SC1090
  . "$data_env"
fi
export CXRFLOW_MODELS_DIR="${CXRFLOW_MODELS_DIR:-$CXRFLOW_DATA/models}"
if ! ls "$CXRFLOW_MODELS_DIR"/densenet121-synthetic/*/manifest.json >/dev/null 2>&1; then
  "$here/make-models.sh" >&2
fi

# Where cargo puts the binaries ($CARGO_TARGET_DIR when set, as CI sets it).
bin="${CARGO_TARGET_DIR:-$root/target}/release"

if [ "${1:-}" = pydicom-compare ]; then
  shift
  python="$("$root/bench/python-env.sh" dicom | tail -n1)"
  cargo build --release -p cxrflow-bench >&2
  exec "$bin/cxrflow-bench" pydicom-compare \
    --python "$python" --dataset "$CXRFLOW_DATASET_ROOT" "$@"
fi

python="$("$root/bench/python-env.sh" | tail -n1)"

cargo build --release -p cxrflow -p cxrflow-bench >&2

exec "$bin/cxrflow-bench" \
  --cxrflow-bin "$bin/cxrflow" \
  --python "$python" \
  --dataset "$CXRFLOW_DATASET_ROOT" \
  --models-dir "$CXRFLOW_MODELS_DIR" \
  "$@"
