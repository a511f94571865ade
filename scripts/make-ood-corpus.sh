#!/usr/bin/env bash
# Writes the corpus the out-of-distribution gate is measured on (`cxrflow model ood-eval`):
#
#   scripts/make-ood-corpus.sh DATASET_DIR OUT_DIR
#
# Photographs and non-chest medical images from scikit-image's and scikit-learn's bundled sample
# data, corrupted chest images of the dataset's train split (models/tools/make_ood_corpus.py),
# and non-chest DICOM objects written by DCMTK: img2dcm wraps each sample image as a secondary
# capture, dcmodify turns copies into MR, CT and a CR of the knee. Nothing in cxrflow is tuned
# to this corpus. Needs scripts/prereqs.sh (DCMTK, the tools venv).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dataset="${1:?usage: make-ood-corpus.sh DATASET_DIR OUT_DIR}"
out="${2:?usage: make-ood-corpus.sh DATASET_DIR OUT_DIR}"
python="$("$here/python-env.sh" | tail -n 1)"
rm -rf "$out"
mkdir -p "$out"
"$python" "$here/../models/tools/make_ood_corpus.py" --dataset "$dataset" --out "$out"
src="$out/dicom-sources"
dst="$out/dicom-nonchest"
mkdir -p "$dst"
n=0
for jpg in "$src"/*.jpg; do
  stem="$(basename "$jpg" .jpg)"
  img2dcm -q -i JPEG "$jpg" "$dst/$stem-sc.dcm"
  cp "$dst/$stem-sc.dcm" "$dst/$stem-mr.dcm"
  dcmodify -q -nb -ie -i "(0008,0060)=MR" -i "(0008,0016)=1.2.840.10008.5.1.4.1.1.4" "$dst/$stem-mr.dcm"
  cp "$dst/$stem-sc.dcm" "$dst/$stem-ct.dcm"
  dcmodify -q -nb -ie -i "(0008,0060)=CT" -i "(0008,0016)=1.2.840.10008.5.1.4.1.1.2" "$dst/$stem-ct.dcm"
  cp "$dst/$stem-sc.dcm" "$dst/$stem-cr-knee.dcm"
  dcmodify -q -nb -ie -i "(0008,0060)=CR" -i "(0008,0016)=1.2.840.10008.5.1.4.1.1.1" \
    -i "(0018,0015)=KNEE" "$dst/$stem-cr-knee.dcm"
  n=$((n + 4))
done
rm -rf "$src"
echo "dicom-nonchest=$n in $out"
