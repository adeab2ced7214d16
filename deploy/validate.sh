#!/usr/bin/env bash
# Validates the deploy files with the real tools that work offline (run by .ci/run):
# - compose.yaml against the Compose specification's JSON schema (check-jsonschema);
# - the Kubernetes manifests against the API's schemas, strictly (kubernetes-validate);
# - the systemd unit with `systemd-analyze verify`, on a copy that points at the built binary.
# Not validated here: the Dockerfile (no daemon, no registry to pull the base images from).
# Usage: deploy/validate.sh [path to the tollgate binary]
set -euo pipefail
here=$(dirname "$0")
# The binary's path is read from where the script was called, before moving into deploy/.
bin=$(realpath "${1:-$here/../target/debug/tollgate}")
cd "$here"

check-jsonschema --builtin-schema vendor.compose-spec compose.yaml
kubernetes-validate --strict --quiet kubernetes/*.yaml
echo "ok -- kubernetes manifests are valid"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
sed -e "s|/usr/local/bin/tollgate|$bin|g" -e "s|/etc/tollgate/tollgate.env|$tmp/tollgate.env|" \
  systemd/tollgate.service > "$tmp/tollgate.service"
cp tollgate.env.example "$tmp/tollgate.env"
out=$(systemd-analyze verify "$tmp/tollgate.service" 2>&1 || true)
# verify also reports on units the host itself ships; only lines about ours count.
if echo "$out" | grep -F "tollgate.service" | grep -v "^$" ; then
  echo "systemd-analyze verify found problems in tollgate.service" >&2
  exit 1
fi
echo "ok -- systemd unit verifies"
