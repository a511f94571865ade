#!/usr/bin/env bash
# Proves the CUDA execution provider and measures DenseNet-121 on this machine's GPU, or runs the
# same checks on the CPU where there is none; writes one JSON file (fields: README "GPU check"):
#
#   scripts/gpu-check.sh                      # GPU if nvidia-smi sees one, else the CPU path
#   scripts/gpu-check.sh --cpu-only --out /tmp/gpu-check.json
#
# With a GPU (target: under 8 minutes on a fresh machine, most of it the 1.5 GB of wheels):
# 1. installs onnxruntime-gpu and the CUDA 13 / cuDNN 9 libraries from PyPI wheels into
#    $CXRFLOW_TOOLS/gpu-venv (scripts/requirements-gpu.txt) and puts their lib folders on
#    LD_LIBRARY_PATH;
# 2. bench/python/gpu_check.py: every compute node of the fp32 and of an fp16 model
#    (onnxconverter-common, float32 I/O kept) placed on CUDAExecutionProvider, from an ONNX
#    Runtime profile, or the list of those that are not; probabilities against fp32 on the CPU
#    within tolerance; images/s at batch 1/8/32/64 in fp32 and fp16;
# 3. the inference service (services/inference/benches/throughput.rs: the service in-process
#    against the embedded broker) with --device cuda at the best fp32 batch, ORT_DYLIB_PATH
#    pointing at the GPU wheel's libonnxruntime: its images/s and the provider its own
#    verdict names (CUDAExecutionProvider only when every compute node ran on CUDA).
# Without one (or with --cpu-only; about a minute, CI runs it): the CPU provider, batch 1/8,
# fp32 and the fp16 conversion (loads, agrees within tolerance), and a short service run on the
# CPU; the same JSON with "gpu": false.
#
# Options: --out FILE (default target/gpu-check/gpu-check.json), --cpu-only, --skip-service,
# --bench-bin PATH (a built throughput bench, else cargo builds it: release with a GPU, the dev
# profile without), --model NAME (default densenet121-synthetic; scripts/make-models.sh).
# Exit status 0 when every check passed, 1 when one failed (the JSON says which), 2 on usage.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
started=$(date +%s)

out="target/gpu-check/gpu-check.json"
cpu_only=0
skip_service=0
bench_bin=""
model_name="densenet121-synthetic"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --cpu-only) cpu_only=1; shift ;;
    --skip-service) skip_service=1; shift ;;
    --bench-bin) bench_bin="$2"; shift 2 ;;
    --model) model_name="$2"; shift 2 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see $0 --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$(dirname "$out")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# shellcheck source=scripts/env.sh
. "$here/env.sh"
ORT_VERSION="${ORT_VERSION:-1.31.1}"

gpu=0
if [ "$cpu_only" = 0 ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  gpu=1
fi

t0=$(date +%s)
if [ "$gpu" = 1 ]; then
  py="$("$here/venv.sh" gpu-venv 'import onnxruntime, onnx, onnxconverter_common, numpy' \
    "$here/requirements-gpu.txt" | tail -n1)"
  site="$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  # The wheels' CUDA libraries for the Rust service (Python preloads them itself), and the
  # runtime library that ships in the onnxruntime-gpu wheel beside its CUDA provider.
  libs="$(find "$site/nvidia" -mindepth 2 -maxdepth 2 -type d -name lib 2>/dev/null | sort | paste -sd:)"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  ORT_DYLIB_PATH="$site/onnxruntime/capi/libonnxruntime.so.$ORT_VERSION"
  export ORT_DYLIB_PATH
  batches="1,8,32,64"; seconds=3; device="cuda"
else
  py="$("$here/python-env.sh" | tail -n1)"
  [ -f "${ORT_DYLIB_PATH:-}" ] || ORT_DYLIB_PATH="$("$here/install-onnxruntime.sh" | tail -n1)"
  export ORT_DYLIB_PATH
  batches="1,8"; seconds=1; device="cpu"
fi
install_s=$(( $(date +%s) - t0 ))

models="${CXRFLOW_MODELS_DIR:-$CXRFLOW_DATA/models}"
model_dir="$(ls -d "$models/$model_name"/*/ 2>/dev/null | sort -V | tail -n1 || true)"
if [ -z "$model_dir" ] || [ ! -f "$model_dir/manifest.json" ]; then
  CXRFLOW_DATA="$(dirname "$models")" "$here/make-models.sh" >&2
  model_dir="$(ls -d "$models/$model_name"/*/ | sort -V | tail -n1)"
fi
model_dir="${model_dir%/}"

gpu_flag=()
[ "$gpu" = 1 ] && gpu_flag=(--gpu)
ort_rc=0
"$py" "$root/bench/python/gpu_check.py" "$model_dir" --out "$work/ort.json" \
  --batches "$batches" --seconds "$seconds" "${gpu_flag[@]}" || ort_rc=$?

# The service through the broker, at the bare runtime's best fp32 batch.
service_json="$work/service.json"
skip_reason=""
build_s=0
if [ "$skip_service" = 1 ]; then
  skip_reason="--skip-service"
elif [ "$ort_rc" != 0 ]; then
  skip_reason="the ONNX Runtime checks failed"
else
  best="$("$py" -c 'import json,sys; print(json.load(open(sys.argv[1]))["best"]["fp32"]["batch"])' "$work/ort.json")"
  if [ -z "$bench_bin" ]; then
    if command -v cargo >/dev/null 2>&1; then
      profile=(--profile dev)
      [ "$gpu" = 1 ] && profile=()
      t0=$(date +%s)
      bench_bin="$(cargo bench -p cxrflow-inference --bench throughput --no-run "${profile[@]}" \
        --message-format=json 2>/dev/null \
        | "$py" -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "throughput" and m.get("executable"):
        print(m["executable"])')" || true
      build_s=$(( $(date +%s) - t0 ))
      [ -n "$bench_bin" ] || skip_reason="cargo could not build the throughput bench"
    else
      skip_reason="no cargo to build the throughput bench (pass --bench-bin)"
    fi
  fi
  if [ -z "$skip_reason" ]; then
    # The patched broker: a no-op when it is installed (a published tansu holds every fetch).
    "$here/install-broker.sh" >&2 || skip_reason="the embedded broker (tansu) is not installed and scripts/install-broker.sh failed"
  fi
  if [ -z "$skip_reason" ]; then
    images=16
    [ "$gpu" = 1 ] && images=$(( best * 16 > 512 ? best * 16 : 512 ))
    t0=$(date +%s)
    if ! CXRFLOW_BENCH_MODEL="$model_dir" CXRFLOW_BENCH_DEVICE="$device" CXRFLOW_BENCH_BATCHES="$best" \
        CXRFLOW_BENCH_IMAGES="$images" CXRFLOW_BENCH_OUT="$service_json" RUST_LOG="${RUST_LOG:-warn}" \
        "$bench_bin" --bench > "$work/service.log" 2>&1; then
      tail -n 20 "$work/service.log" >&2
      skip_reason="the service run failed: $(grep -m1 -E 'panicked|Error|error' "$work/service.log" || tail -n1 "$work/service.log")"
      rm -f "$service_json"
    fi
    service_s=$(( $(date +%s) - t0 ))
  fi
fi

"$py" - "$work/ort.json" "$service_json" "$out" "$skip_reason" "$install_s" "$build_s" \
  "${service_s:-0}" "$started" "$gpu" <<'EOF'
import json, os, sys, time
ort_path, svc_path, out, skip, install_s, build_s, service_s, started, gpu = sys.argv[1:]
report = json.load(open(ort_path)) if os.path.exists(ort_path) else {"gpu": gpu == "1", "ok": False, "error": "gpu_check.py wrote nothing"}
ok = bool(report.get("ok"))
if os.path.exists(svc_path):
    s = json.load(open(svc_path))
    run = s["service"][0]
    requested = "CUDAExecutionProvider" if report["gpu"] else "CPUExecutionProvider"
    service = {
        "ran": True,
        "device": s["device"],
        "batch": run["batch"],
        "images": run["images"],
        "images_per_s": run["images_per_s"],
        "bare_images_per_s": s["bare"][0]["images_per_s"],
        "ratio_service_over_bare": run["ratio_service_over_bare"],
        "inference_ms_p50": run["inference_ms_p50"],
        # What the service's own verdict (its execution_provider_info metric, each prediction's
        # execution_provider) says: the requested provider only when every compute node ran there.
        "execution_provider": run["execution_provider"],
        "every_node_on_requested": run["execution_provider"] == [requested],
        "placement": s["placement"],
        "build_s": int(build_s),
        "run_s": int(service_s),
    }
    ok &= service["every_node_on_requested"] and service["images_per_s"] > 0
else:
    service = {"ran": False, "skipped": skip or "unknown"}
    # Skipping is allowed only when asked for; a failed build or run is a failed check.
    ok &= skip == "--skip-service"
report["service"] = service
report["install_s"] = int(install_s)
report["elapsed_s"] = int(time.time() - int(started))
report["ok"] = bool(ok)
with open(out, "w") as f:
    json.dump(report, f, indent=1)
print(json.dumps({k: report.get(k) for k in ("gpu", "ok", "best", "elapsed_s")}))
sys.exit(0 if ok else 1)
EOF
