#!/usr/bin/env bash
# Dependency audit with cargo-deny against deny.toml: licenses (permissive only, exceptions
# named), sources (crates.io only), bans (no wildcard versions) and, where a copy of the RustSec
# advisory database is at hand, advisories (vulnerable, unsound, yanked or unmaintained crates
# in Cargo.lock). CI runs it (.ci/run).
#
#   scripts/audit.sh                         licenses, bans, sources; advisories only with a database
#   CXRFLOW_ADVISORY_DB=DIR scripts/audit.sh   + advisories, offline, against a git clone of
#                                              https://github.com/rustsec/advisory-db at DIR
#   CXRFLOW_ADVISORY_DB=fetch scripts/audit.sh + advisories, cargo-deny fetching the database
#
# The package registries this project may use do not carry the advisory database, so without
# one the advisories check is reported as skipped (here and in $CXRFLOW_TEST_SUMMARY when set),
# never as passed. cargo-deny is built once from crates.io into $CXRFLOW_TOOLS (about 2.5 min on
# 2 cores; no C).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/.."
DENY_VERSION=0.20.2
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
deny="$TOOLS/bin/cargo-deny"
if ! { [ -x "$deny" ] && "$deny" --version 2>/dev/null | grep -qx "cargo-deny $DENY_VERSION"; }; then
  echo "building cargo-deny $DENY_VERSION into $TOOLS (about 2.5 minutes on 2 cores)"
  CARGO_TARGET_DIR="$TOOLS/build/cargo-deny" \
    cargo install --locked --force --quiet --root "$TOOLS" cargo-deny --version "$DENY_VERSION"
fi

summary() {
  echo "$1"
  if [ -n "${CXRFLOW_TEST_SUMMARY:-}" ]; then echo "$1" >> "$CXRFLOW_TEST_SUMMARY"; fi
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
rc=0
# cargo's metadata first, from crates.io where it lacks a crate (it wants every platform's, the
# Windows ones too, which a build on Linux never downloaded); cargo-deny itself then runs
# offline: it would otherwise fetch from GitHub, which this project's machines cannot reach.
cargo metadata --format-version 1 --locked > "$work/metadata.json"
"$deny" --offline --color never --metadata-path "$work/metadata.json" \
  check licenses bans sources || rc=$?
if [ "$rc" -ne 0 ]; then
  summary "== dependency audit: FAILED (licenses, bans or sources; cargo-deny's report above)"
  exit "$rc"
fi

db="${CXRFLOW_ADVISORY_DB:-}"
if [ -z "$db" ]; then
  summary "== dependency audit: licenses, bans, sources ok; advisories SKIPPED: no RustSec advisory database here (set CXRFLOW_ADVISORY_DB to a clone of github.com/rustsec/advisory-db, or to 'fetch' where GitHub is reachable)"
  exit 0
fi

# cargo-deny looks for the default database under db-path in a directory named after its URL.
mkdir -p "$work/db"
with_db() { sed "s|^\[advisories\]$|[advisories]\ndb-path = \"$work/db\"|" "$1"; }
with_db deny.toml > "$work/deny.toml"
if [ "$db" = fetch ]; then
  # Fetched once, then both checks below run offline against the same copy.
  "$deny" --color never --metadata-path "$work/metadata.json" --config "$work/deny.toml" \
    fetch db || {
    summary "== dependency audit: advisories FAILED: the RustSec database could not be fetched (cargo-deny's error above)"
    exit 1
  }
  what="$(git -C "$work/db/advisory-db-3157b0e258782691" log -1 --format='commit %h of %cs' 2>/dev/null)" \
    || what="fetched just now"
else
  [ -d "$db/crates" ] || { echo "audit: CXRFLOW_ADVISORY_DB=$db is not a clone of rustsec/advisory-db (no crates/)" >&2; exit 2; }
  what="$(git -C "$db" log -1 --format='commit %h of %cs' 2>/dev/null)" \
    || { echo "audit: CXRFLOW_ADVISORY_DB=$db is not a git clone (cargo-deny reads its HEAD)" >&2; exit 2; }
  ln -s "$(cd "$db" && pwd)" "$work/db/advisory-db-3157b0e258782691"
fi
"$deny" --offline --color never --metadata-path "$work/metadata.json" \
  --config "$work/deny.toml" check advisories || rc=$?
# The embedded broker, as scripts/install-broker.sh builds it (its unpacked source, the
# patched storage and broker crates and scripts/tansu/Cargo.lock), against
# scripts/tansu/deny.toml.
broker="$TOOLS/src/tansu-0.6.0"
if [ -f "$broker/Cargo.toml" ] && [ -d "$TOOLS/src/tansu-storage-0.6.0" ] \
  && [ -d "$TOOLS/src/tansu-broker-0.6.0" ]; then
  cp "$here/tansu/Cargo.lock" "$broker/Cargo.lock"
  cargo metadata --format-version 1 --locked --manifest-path "$broker/Cargo.toml" \
    --features libsql,dynostore \
    --config "patch.crates-io.tansu-storage.path=\"$TOOLS/src/tansu-storage-0.6.0\"" \
    --config "patch.crates-io.tansu-broker.path=\"$TOOLS/src/tansu-broker-0.6.0\"" \
    > "$work/broker-metadata.json"
  with_db "$here/tansu/deny.toml" > "$work/broker-deny.toml"
  echo "the embedded broker (tansu 0.6.0 as scripts/install-broker.sh builds it):"
  "$deny" --offline --color never --metadata-path "$work/broker-metadata.json" \
    --config "$work/broker-deny.toml" check advisories || rc=$?
  what="$what; the embedded broker too"
else
  what="$what; the embedded broker not checked: its source is unpacked by scripts/install-broker.sh"
fi
if [ "$rc" -ne 0 ]; then
  summary "== dependency audit: advisories FAILED against the RustSec database ($what; cargo-deny's report above)"
  exit "$rc"
fi
summary "== dependency audit: licenses, bans, sources, advisories ok (RustSec database $what)"
