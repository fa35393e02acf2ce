#!/usr/bin/env bash
# Builds Nomad from the Go module proxy and caches the binary; prints its path.
# `go install github.com/hashicorp/nomad@v1.9.3` is refused (Nomad's go.mod
# has replace directives), so a throw-away wrapper module requires Nomad,
# copies its replaces and pins nomad/api to the commit of the release.
# Skipped when the cached binary exists. Override the place with
# GARRISON_NOMAD_CACHE (a directory); the tests read GARRISON_NOMAD or look in
# the same place.
set -euo pipefail

version=1.9.3
api_version=v0.0.0-20241111163541-d92bf1014886
cache=${GARRISON_NOMAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/garrison/nomad-$version}
bin=$cache/nomad

if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "Nomad v$version"; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >go.mod <<MOD
module garrison.local/nomadbuild

go 1.22

require github.com/hashicorp/nomad v$version

replace (
	github.com/Microsoft/go-winio => github.com/endocrimes/go-winio v0.4.13-0.20190628114223-fb47a8b41948
	github.com/armon/go-metrics => github.com/armon/go-metrics v0.0.0-20230509193637-d9ca9af9f1f9
	github.com/hashicorp/hcl => github.com/hashicorp/hcl v1.0.1-0.20201016140508-a07e7d50bbee
	github.com/hashicorp/nomad/api => github.com/hashicorp/nomad/api $api_version
)
MOD
start=$(date +%s)
echo "nomad-build: building Nomad v$version into $bin (takes minutes)" >&2
# go mod tidy fails on a test-only import of Nomad's; go get resolves the
# build graph only.
GOFLAGS=-mod=mod go get github.com/hashicorp/nomad@v$version >&2
GOFLAGS=-mod=mod CGO_ENABLED=${CGO_ENABLED:-1} go build -trimpath -o "$work/nomad" github.com/hashicorp/nomad >&2
# Move into place atomically so a parallel run never sees half a binary.
mv "$work/nomad" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "nomad-build: built in $(( $(date +%s) - start ))s" >&2
echo "$bin"
