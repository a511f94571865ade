#!/usr/bin/env bash
# The test command: installs prerequisites (skipping what is there), builds once, generates the
# synthetic dataset and the models (cached by input hash), then runs every test with nextest
# against real brokers, real ONNX Runtime sessions, real files and a real S3-compatible server,
# then lists the tests that were skipped for a missing tool and those that needed their retry.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
"$here/prereqs.sh"
# shellcheck disable=SC1091
. "$here/env.sh"
"$here/make-test-data.sh"
# shellcheck disable=SC1091
. "$CXRFLOW_DATA/test-data.env"
# prereqs.sh installed every tool the project installs, so a test that misses one fails
# (CXRFLOW_REQUIRE_TOOLS=0 skips it instead); what cannot be installed here (ScyllaDB) is
# skipped either way. Skips go to the skip log, retries to nextest's JUnit report
# (.config/nextest.toml); both are summarised at the end, whatever the run's outcome.
export CXRFLOW_REQUIRE_TOOLS="${CXRFLOW_REQUIRE_TOOLS:-1}"
target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
export CXRFLOW_SKIP_LOG="${CXRFLOW_SKIP_LOG:-$target/cxrflow-skipped-tests.tsv}"
# nextest keeps its store (JUnit report included) in target/nextest under the workspace root,
# whatever CARGO_TARGET_DIR says.
junit="$PWD/target/nextest/${NEXTEST_PROFILE:-default}/junit.xml"
summary="${CXRFLOW_TEST_SUMMARY:-$target/cxrflow-test-summary.txt}"
rm -f "$CXRFLOW_SKIP_LOG" "$junit" "$summary"
rc=0
cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
echo "== test summary (CXRFLOW_REQUIRE_TOOLS=$CXRFLOW_REQUIRE_TOOLS, nextest exit $rc)" > "$summary"
python3 "$here/test-summary.py" "$CXRFLOW_SKIP_LOG" "$junit" >> "$summary" || rc=$((rc ? rc : 1))
cat "$summary"
exit "$rc"
