# shellcheck shell=sh
# Source this file (do not execute it) to point the shell at cxrflow's locally installed tools:
#
#   . scripts/env.sh
#
# Exports CXRFLOW_TOOLS, CXRFLOW_DATA, ORT_DYLIB_PATH (the ONNX Runtime library installed by
# scripts/install-onnxruntime.sh) and puts $CXRFLOW_TOOLS/bin (tansu, from
# scripts/install-broker.sh) on PATH. Values already set in the environment are kept.
# Set CXRFLOW_GPU=1 before sourcing to prefer the CUDA build of ONNX Runtime when it is installed.

export CXRFLOW_TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
export CXRFLOW_DATA="${CXRFLOW_DATA:-$HOME/.cache/cxrflow/data}"

if [ -z "${ORT_DYLIB_PATH:-}" ]; then
  _cxr_ort_version="${ORT_VERSION:-1.31.1}"
  if [ "${CXRFLOW_GPU:-0}" = 1 ] && [ -f "$CXRFLOW_TOOLS/onnxruntime-gpu/libonnxruntime.so.$_cxr_ort_version" ]; then
    ORT_DYLIB_PATH="$CXRFLOW_TOOLS/onnxruntime-gpu/libonnxruntime.so.$_cxr_ort_version"
  else
    ORT_DYLIB_PATH="$CXRFLOW_TOOLS/onnxruntime/libonnxruntime.so.$_cxr_ort_version"
  fi
  export ORT_DYLIB_PATH
  [ -f "$ORT_DYLIB_PATH" ] || echo "cxrflow env: $ORT_DYLIB_PATH missing; run scripts/install-onnxruntime.sh" >&2
  unset _cxr_ort_version
fi

case ":$PATH:" in
  *":$CXRFLOW_TOOLS/bin:"*) ;;
  *) export PATH="$CXRFLOW_TOOLS/bin:$PATH" ;;
esac
