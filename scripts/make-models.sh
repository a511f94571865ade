#!/usr/bin/env bash
# Builds cxrflow's model directories (docs/model-manifest.md) under $CXRFLOW_DATA/models:
#
#   scripts/make-models.sh [DATASET_DIR] [--force]
#
#   densenet121-synthetic/0.0.1/   DenseNet-121 with synthetic weights (models/tools/make_densenet121.py)
#   cxr-small/1.0.0/               small model fitted on DATASET_DIR (models/tools/fit_small_model.py);
#                                  only when DATASET_DIR (or $CXRFLOW_DATASET) is given: a CheXpert-
#                                  layout directory holding train.csv
#
# First creates/updates the Python venv (scripts/python-env.sh). Each output is cached: a sha256 of
# its inputs (the tool scripts, the pinned requirements, the tool arguments and, for cxr-small, the
# dataset's train.csv plus the list of the image files it names with their sizes) is kept in
# <outdir>/.inputs-hash; when it matches, the output is not rebuilt. --force rebuilds anyway.
# Prints the output directories (one per line) at the end.
#
# Environment: CXRFLOW_DATA (default ~/.cache/cxrflow/data), CXRFLOW_TOOLS (venv location),
# CXRFLOW_DATASET, CXRFLOW_SMALL_MODEL_VERSION (default 1.0.0), CXRFLOW_SEED (default 0).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
tools="$repo/models/tools"
DATA="${CXRFLOW_DATA:-$HOME/.cache/cxrflow/data}"
SMALL_VERSION="${CXRFLOW_SMALL_MODEL_VERSION:-1.0.0}"
SEED="${CXRFLOW_SEED:-0}"
DENSE_VERSION="0.0.1"

dataset="${CXRFLOW_DATASET:-}"
force=0
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "unknown option: $arg" >&2; exit 2 ;;
    *) dataset="$arg" ;;
  esac
done

py="$("$here/python-env.sh" | tail -n1)"

# build NAME OUTDIR HASH FUNC: runs FUNC BUILD_DIR (which writes the model directory there) unless
# OUTDIR/.inputs-hash equals HASH; the result replaces OUTDIR only when FUNC succeeded.
build() {
  local name="$1" out="$2" hash="$3"
  shift 3
  if [ "$force" = 0 ] && [ -f "$out/.inputs-hash" ] && [ "$(cat "$out/.inputs-hash")" = "$hash" ] \
     && [ -f "$out/model.onnx" ] && [ -f "$out/manifest.json" ]; then
    echo "$name: up to date ($out)" >&2
    return 0
  fi
  local tmp="$out.building.$$"
  rm -rf "$tmp"
  mkdir -p "$(dirname "$out")"
  echo "$name: building into $out" >&2
  local t0=$SECONDS
  if ! "$@" "$tmp" >&2; then
    rm -rf "$tmp"
    echo "$name: build FAILED" >&2
    return 1
  fi
  echo "$hash" > "$tmp/.inputs-hash"
  rm -rf "$out"
  mv "$tmp" "$out"
  echo "$name: built in $((SECONDS - t0))s" >&2
}

outs=()

# ---- densenet121-synthetic
dense_out="$DATA/models/densenet121-synthetic/$DENSE_VERSION"
dense_hash="$( { cat "$tools/make_densenet121.py" "$tools/cxr_common.py" "$here/requirements-models.txt";
                 echo "version=$DENSE_VERSION"; } | sha256sum | cut -d' ' -f1)"
make_dense() { "$py" "$tools/make_densenet121.py" "$1" --version "$DENSE_VERSION"; }
build densenet121-synthetic "$dense_out" "$dense_hash" make_dense
outs+=("$dense_out")

# ---- cxr-small (needs a dataset)
if [ -n "$dataset" ]; then
  [ -f "$dataset/train.csv" ] || { echo "no train.csv in dataset dir $dataset" >&2; exit 1; }
  dataset="$(cd "$dataset" && pwd)"
  small_out="$DATA/models/cxr-small/$SMALL_VERSION"
  # Dataset fingerprint: train.csv bytes + every image file it names (resolved as the fitter does:
  # relative to the dataset dir's parent) with its size; a missing file counts as size -1.
  data_hash="$("$py" - "$dataset" <<'PY'
import csv, hashlib, os, sys
ds = sys.argv[1]
parent = os.path.dirname(ds)
h = hashlib.sha256()
with open(os.path.join(ds, "train.csv"), "rb") as f:
    h.update(f.read())
with open(os.path.join(ds, "train.csv"), newline="") as f:
    for row in csv.DictReader(f):
        rel = row.get("Path", "")
        p = os.path.join(parent, rel)
        if not os.path.exists(p) and "/" in rel:
            p = os.path.join(ds, rel.split("/", 1)[1])
        try:
            size = os.path.getsize(p)
        except OSError:
            size = -1
        h.update(f"{rel}\t{size}\n".encode())
print(h.hexdigest())
PY
)"
  small_hash="$( { cat "$tools/fit_small_model.py" "$tools/cxr_common.py" "$here/requirements-models.txt";
                   echo "version=$SMALL_VERSION seed=$SEED data=$data_hash"; } | sha256sum | cut -d' ' -f1)"
  make_small() { "$py" "$tools/fit_small_model.py" "$dataset" "$1" --version "$SMALL_VERSION" --seed "$SEED"; }
  build cxr-small "$small_out" "$small_hash" make_small
  outs+=("$small_out")
else
  echo "cxr-small: skipped (no dataset: pass DATASET_DIR or set CXRFLOW_DATASET)" >&2
fi

printf '%s\n' "${outs[@]}"
