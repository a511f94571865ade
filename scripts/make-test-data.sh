#!/usr/bin/env bash
# Builds the cxrflow binary, synthesizes a small CheXpert-format dataset from the real label
# file, and fits the models on it (all cached). Writes $CXRFLOW_DATA/test-data.env with the
# paths the tests and `cxrflow up` read.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
# shellcheck disable=SC1091
. "$here/env.sh"
STUDIES="${CXRFLOW_SYNTH_STUDIES:-1500}"
SEED="${CXRFLOW_SEED:-7}"
# A dev build (dependencies and hot crates are optimised by the dev profile in Cargo.toml), so
# the test run that follows reuses it instead of compiling everything a second time.
cargo build -p cxrflow
bin="${CARGO_TARGET_DIR:-$(pwd)/target}/debug/cxrflow"
ds="$CXRFLOW_DATA/datasets/synth-$SEED-$STUDIES"
if [ ! -f "$ds/.complete" ]; then
  rm -rf "$ds"
  "$bin" sim synth --labels "$CXRFLOW_DATA/chexpert-labels/chexpert_train.csv.gz" \
    --masks "$CXRFLOW_DATA/chexpert-labels/semantic_masks_v7labs_lungs.zip" \
    --out "$ds" --seed "$SEED" --studies "$STUDIES" --heldout 600 --valid 150
  touch "$ds/.complete"
fi
CXRFLOW_DATASET="$ds/CheXpert-v1.0-small" "$here/make-models.sh" >/dev/null
# The worklist tiers' thresholds, chosen on the validation split (CRITICAL: pneumothorax at
# sensitivity 0.90 within a 15% budget; URGENT at specificity 0.90) and measured on the held-out
# split; again whenever make-models.sh rewrote the manifest.
small="$CXRFLOW_DATA/models/cxr-small/${CXRFLOW_SMALL_MODEL_VERSION:-1.0.0}"
if ! grep -q '"calibration"' "$small/manifest.json"; then
  "$bin" model calibrate --model-dir "$small" --dataset "$ds" --split valid --evaluate heldout \
    --out "$small/calibration-report.json" >/dev/null 2>"$small/calibration.log"
  grep '^tier ' "$small/calibration.log" || true
fi
# The out-of-distribution gate's references for the fitted model (frontal films, and laterals
# for a film with no view position), calibrated on the validation split (again whenever
# make-models.sh rewrote the manifest, or it was calibrated before the lateral reference).
if ! grep -q '"lateral"' "$small/manifest.json"; then
  "$bin" model calibrate-ood --model-dir "$small" --dataset "$ds" --split valid >/dev/null
fi
cat > "$CXRFLOW_DATA/test-data.env" <<ENV
export CXRFLOW_DATASET_ROOT="$ds"
export CXRFLOW_MODELS_DIR="$CXRFLOW_DATA/models"
export CXRFLOW_BIN="$bin"
ENV
echo "test data ready: $ds, models in $CXRFLOW_DATA/models"
