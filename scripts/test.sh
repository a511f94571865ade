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
# Free space where the builds and the tests' files go. A full disk fails whichever test writes
# next with "No space left on device", far from the cause, so the summary says how much there
# was; below 2 GiB nothing can pass (a fresh build alone needs about 15), so stop here.
mkdir -p "$target"
free_gib() { df -Pk "$1" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
free_at_start="$(free_gib "$target")"
if awk -v f="$free_at_start" 'BEGIN { exit !(f < 2) }'; then
  echo "scripts/test.sh: only $free_at_start GiB free on the disk of $target; the build and the tests need at least 2 GiB (a fresh build about 15)" >&2
  exit 1
fi
rc=0
cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
echo "== test summary (CXRFLOW_REQUIRE_TOOLS=$CXRFLOW_REQUIRE_TOOLS, nextest exit $rc)" > "$summary"
# Cargo keeps every earlier build of each test binary (50-150 MB each) until the disk is full;
# remove those this build replaced (scripts/prune-test-binaries.py says how it picks them). Only
# after a run of the whole suite: listing the workspace's binaries builds every one of them.
bins="$target/cxrflow-test-binaries.json"
if [ "$#" -eq 0 ] && cargo nextest list --workspace --list-type binaries-only --message-format json > "$bins" 2>/dev/null; then
  python3 "$here/prune-test-binaries.py" "$target" "$bins" || true
fi
echo "disk: $free_at_start GiB free at the start, $(free_gib "$target") GiB at the end (the disk of $target)" >> "$summary"
python3 "$here/test-summary.py" "$CXRFLOW_SKIP_LOG" "$junit" >> "$summary" || rc=$((rc ? rc : 1))
cat "$summary"
exit "$rc"
