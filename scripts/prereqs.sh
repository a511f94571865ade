#!/usr/bin/env bash
# Installs everything cxrflow needs on a fresh Debian machine, from the package registries only,
# and skips whatever is already there: the tansu broker (crates.io), ONNX Runtime (PyPI wheel),
# the real CheXpert label file and lung masks (PyPI wheel torchxrayvision), the Python tools
# for the models, and moto's S3 server for the S3 tests (PyPI). Then source scripts/env.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
export CXRFLOW_TOOLS="$TOOLS"

# Debian packages: unzip and venv for the wheels, Chromium + ChromeDriver for the worklist page's
# browser test, DCMTK (echoscu, storescu) as a third-party DICOM client for the gateway's tests
# and the writer of preprocess's codec test files (dcmcjpeg, dcmcjpls, dcmcrle, dcmconv), cmake
# and a C++ compiler for the two codecs built from the source their -sys crates bundle: CharLS
# (JPEG-LS, ~15 s on 2 cores) and libjpeg-turbo 3 (12-bit JPEG, ~45 s on 2 cores).
need=()
command -v unzip >/dev/null || need+=(unzip)
# git applies cxrflow's patch to the broker (scripts/install-broker.sh).
command -v git >/dev/null || need+=(git)
dpkg -s libssl-dev >/dev/null 2>&1 || need+=(libssl-dev pkg-config)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v storescu >/dev/null || need+=(dcmtk)
# dicom3tools: dciodvfy checks the results service's DICOM SR against the IOD in its tests.
command -v dciodvfy >/dev/null || need+=(dicom3tools)
# GDCM's gdcmconv and OpenJPEG's opj_compress: other encoders' files for preprocess's tests.
command -v gdcmconv >/dev/null || need+=(libgdcm-tools)
command -v opj_compress >/dev/null || need+=(libopenjp2-tools)
# OpenJPH's ojph_compress/ojph_expand: HTJ2K files for preprocess's tests.
command -v ojph_compress >/dev/null || need+=(openjph-tools)
# strace: the gateway's durability test reads its fsyncs and renames from the real syscalls.
command -v strace >/dev/null || need+=(strace)
command -v cmake >/dev/null || need+=(cmake)
command -v c++ >/dev/null || need+=(g++)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "need Debian packages: ${need[*]} (apt-get install ${need[*]})" >&2
    exit 1
  fi
fi

"$here/install-broker.sh"
"$here/install-onnxruntime.sh" >/dev/null
if [ "${CXRFLOW_GPU:-0}" = 1 ]; then "$here/install-onnxruntime.sh" --gpu >/dev/null; fi
"$here/fetch-chexpert-labels.sh" >/dev/null
"$here/python-env.sh" >/dev/null
"$here/fetch-fhir-schema.sh"

# moto's S3-compatible server for the S3 tests, in its own venv; moto_server lands on PATH.
if [ ! -x "$TOOLS/bin/moto_server" ]; then
  python3 -m venv "$TOOLS/moto-venv"
  "$TOOLS/moto-venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/moto-venv/bin/moto_server" "$TOOLS/bin/moto_server"
fi
echo "prerequisites ready in $TOOLS"
