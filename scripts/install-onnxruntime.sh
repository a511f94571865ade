#!/usr/bin/env bash
# Installs the ONNX Runtime shared library used by the inference service (the `ort` crate loads it
# at run time through ORT_DYLIB_PATH). It is taken from the official PyPI wheel, so only pip is
# needed: no download from anywhere but the package registry.
#
#   scripts/install-onnxruntime.sh          # CPU build  -> $CXRFLOW_TOOLS/onnxruntime/
#   scripts/install-onnxruntime.sh --gpu    # CUDA build -> $CXRFLOW_TOOLS/onnxruntime-gpu/
#
# Prints (last line of stdout) the path of libonnxruntime.so.<version>: the value for ORT_DYLIB_PATH.
# Idempotent: does nothing when that file is already installed.
#
# Notes:
# - The wheel ships only the versioned file libonnxruntime.so.<version> (no libonnxruntime.so);
#   this script adds a libonnxruntime.so symlink beside it for tools that want the plain name.
# - The --gpu build also needs libonnxruntime_providers_shared.so and
#   libonnxruntime_providers_cuda.so (copied here) plus the CUDA 13 runtime (libcudart.so.13,
#   libcublas.so.13, libcublasLt.so.13, libcurand.so.10) and cuDNN 9 (libcudnn.so.9), which are NOT
#   part of the wheel: they must be on the loader path (e.g. LD_LIBRARY_PATH), from a CUDA 13
#   install or from PyPI's nvidia-cuda-runtime~=13.0 nvidia-cublas~=13.0 nvidia-curand~=10.0
#   nvidia-cudnn-cu13~=9.0 wheels (their nvidia/*/lib folders), and the driver must support CUDA 13.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.31.1}"
PYTHON="${PYTHON:-python3}"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"

gpu=0
for arg in "$@"; do
  case "$arg" in
    --gpu) gpu=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg (usage: $0 [--gpu])" >&2; exit 2 ;;
  esac
done

if [ "$gpu" = 1 ]; then
  pkg="onnxruntime-gpu"
  dest="$TOOLS/onnxruntime-gpu"
else
  pkg="onnxruntime"
  dest="$TOOLS/onnxruntime"
fi
lib="$dest/libonnxruntime.so.$ORT_VERSION"

if [ -f "$lib" ] && { [ "$gpu" = 0 ] || [ -f "$dest/libonnxruntime_providers_cuda.so" ]; }; then
  echo "$pkg $ORT_VERSION already installed in $dest" >&2
  echo "$lib"
  exit 0
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "downloading $pkg==$ORT_VERSION wheel from PyPI" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$tmp" "$pkg==$ORT_VERSION" >&2
wheels=("$tmp"/*.whl)
wheel="${wheels[0]}"
[ -f "$wheel" ] || { echo "no wheel downloaded for $pkg==$ORT_VERSION" >&2; exit 1; }

mkdir -p "$dest"
# Extract with Python's zipfile (unzip is not always installed). Copy into a staging dir first,
# then move, so an interrupted run never leaves a half-written library under the final name.
stage="$tmp/stage"
mkdir -p "$stage"
"$PYTHON" - "$wheel" "$stage" "$gpu" <<'PY'
import os, re, shutil, sys, zipfile
wheel, stage, gpu = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
pat = re.compile(r"^onnxruntime/capi/(libonnxruntime\.so[^/]*|libonnxruntime_providers_[^/]*\.so)$")
n = 0
with zipfile.ZipFile(wheel) as z:
    for info in z.infolist():
        m = pat.match(info.filename)
        if not m:
            continue
        name = m.group(1)
        # providers_shared is tiny and needed by any EP loaded as a plugin; the big CUDA/TensorRT
        # provider libraries exist only in the gpu wheel anyway.
        with z.open(info) as src, open(os.path.join(stage, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.chmod(os.path.join(stage, name), 0o755)
        print(f"  {name} ({info.file_size / 1e6:.1f} MB)", file=sys.stderr)
        n += 1
if n == 0:
    sys.exit("no onnxruntime/capi/libonnxruntime.so* in " + wheel)
PY
[ -f "$stage/libonnxruntime.so.$ORT_VERSION" ] || {
  echo "wheel has no libonnxruntime.so.$ORT_VERSION; found: $(ls "$stage")" >&2; exit 1; }
# The main library goes last: its presence is what marks the install as complete.
for f in "$stage"/*; do
  [ "$f" = "$stage/libonnxruntime.so.$ORT_VERSION" ] || mv -f "$f" "$dest/"
done
mv -f "$stage/libonnxruntime.so.$ORT_VERSION" "$dest/"
ln -sfn "libonnxruntime.so.$ORT_VERSION" "$dest/libonnxruntime.so"
echo "installed $pkg $ORT_VERSION into $dest" >&2
echo "$lib"
