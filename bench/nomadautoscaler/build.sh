#!/usr/bin/env bash
# Builds HashiCorp's nomad-autoscaler from the Go module proxy and caches the
# binary; prints its path. Built as scripts/nomad-build.sh builds Nomad:
# through a throw-away wrapper module requiring the release, so the build
# graph is the release's own go.mod/go.sum. Skipped when the cached binary
# exists. Override the place with GARRISON_NOMAD_AUTOSCALER_CACHE (a
# directory); the benchmark reads GARRISON_NOMAD_AUTOSCALER or looks in the
# same place.
set -euo pipefail

version=0.4.6
cache=${GARRISON_NOMAD_AUTOSCALER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/garrison/nomad-autoscaler-$version}
bin=$cache/nomad-autoscaler

if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "v$version"; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >go.mod <<MOD
module garrison.local/nomadautoscalerbuild

go 1.23

require github.com/hashicorp/nomad-autoscaler v$version
MOD
start=$(date +%s)
echo "nomad-autoscaler-build: building nomad-autoscaler v$version into $bin (takes minutes)" >&2
GOFLAGS=-mod=mod go get github.com/hashicorp/nomad-autoscaler@v$version >&2
GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "$work/nomad-autoscaler" github.com/hashicorp/nomad-autoscaler >&2
# Move into place atomically so a parallel run never sees half a binary.
mv "$work/nomad-autoscaler" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "nomad-autoscaler-build: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
