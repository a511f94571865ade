#!/usr/bin/env bash
# Installs the embedded Kafka-API broker (tansu) used by `cxrflow up` and the test suite: tansu
# 0.6.0 from crates.io with cxrflow's patches (scripts/tansu/tansu-storage-*.patch: a fetch is
# answered as soon as records arrive instead of being held for the whole fetch.wait.max.ms;
# scripts/tansu/tansu-broker-*.patch: a consumer group is formed only from its leader's
# assignment, and never waits on a leader that is no longer a member). The published tansu,
# tansu-storage and tansu-broker crates are downloaded from crates.io and checked against their
# pinned SHA-256; tansu-storage and tansu-broker are patched and substituted for the registry
# copies (a [patch] given on the command line), and tansu is built `--locked` against scripts/tansu/Cargo.lock: tansu's own
# lock file with the crates that had RustSec advisories moved to their fixed semver-compatible
# releases (h2, rustls-webpki, aws-lc-rs/aws-lc-sys, crossbeam-epoch, thin-vec) and yanked ones
# to releases that are not (spin, chacha20, julian_day_converter, lz4_flex); see the README's
# "Dependency audit". Every other crate is the one tansu's Cargo.lock pins.
# Skips the build when $CXRFLOW_TOOLS/bin/tansu was built from these very patches and lock file
# ($CXRFLOW_TOOLS/bin/tansu.patches holds their checksum).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
TANSU_VERSION="${TANSU_VERSION:-0.6.0}"
# tansu-0.6.0.crate and tansu-storage-0.6.0.crate as crates.io serves them (the checksums in
# crates.io's index).
TANSU_SHA256=4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d
STORAGE_SHA256=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d
BROKER_SHA256=93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720
TOOLS="${CXRFLOW_TOOLS:-$HOME/.cache/cxrflow/tools}"
mkdir -p "$TOOLS/bin"
stamp="tansu $TANSU_VERSION patches $(cat "$here"/tansu/*.patch "$here"/tansu/Cargo.lock | sha256sum | cut -c1-16)"
if [ -x "$TOOLS/bin/tansu" ] && [ "$(cat "$TOOLS/bin/tansu.patches" 2>/dev/null)" = "$stamp" ] \
  && "$TOOLS/bin/tansu" --version 2>/dev/null | grep "$TANSU_VERSION" >/dev/null; then
  echo "tansu $TANSU_VERSION (patched) already installed at $TOOLS/bin/tansu"
  exit 0
fi

command -v git >/dev/null || { echo "install-broker: git applies scripts/tansu/*.patch (apt-get install git)" >&2; exit 1; }
src="$TOOLS/src"
mkdir -p "$src"
# fetch NAME SHA256: $src/NAME-$TANSU_VERSION.crate from crates.io, checked against SHA256,
# unpacked afresh.
fetch() {
  local crate="$src/$1-$TANSU_VERSION.crate"
  if ! echo "$2  $crate" | sha256sum --check --status 2>/dev/null; then
    python3 - "$crate" "https://static.crates.io/crates/$1/$1-$TANSU_VERSION.crate" <<'EOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[2], timeout=120) as r, open(sys.argv[1], "wb") as f:
    f.write(r.read())
EOF
    echo "$2  $crate" | sha256sum --check --status \
      || { echo "install-broker: $crate does not match its pinned SHA-256" >&2; exit 1; }
  fi
  rm -rf "$src/$1-$TANSU_VERSION"
  tar -xzf "$crate" -C "$src"
}
fetch tansu "$TANSU_SHA256"
fetch tansu-storage "$STORAGE_SHA256"
fetch tansu-broker "$BROKER_SHA256"
cp "$here/tansu/Cargo.lock" "$src/tansu-$TANSU_VERSION/Cargo.lock"
for crate in tansu-storage tansu-broker; do
  for p in "$here"/tansu/"$crate"-*.patch; do
    # Stop git's repository search at $src: a plain patch, whatever surrounds $CXRFLOW_TOOLS.
    (cd "$src/$crate-$TANSU_VERSION" && GIT_CEILING_DIRECTORIES="$src" git apply -p1 "$p") \
      || { echo "install-broker: $p does not apply to $crate $TANSU_VERSION" >&2; exit 1; }
  done
done

echo "building tansu $TANSU_VERSION (patched) into $TOOLS (about 12 minutes on 2 cores)"
rm -f "$TOOLS/bin/tansu.patches"
cargo install --locked --force --root "$TOOLS" --path "$src/tansu-$TANSU_VERSION" \
  --features libsql,dynostore \
  --config "patch.crates-io.tansu-storage.path=\"$src/tansu-storage-$TANSU_VERSION\"" \
  --config "patch.crates-io.tansu-broker.path=\"$src/tansu-broker-$TANSU_VERSION\""
"$TOOLS/bin/tansu" --version
echo "$stamp" > "$TOOLS/bin/tansu.patches"
