#!/usr/bin/env bash
# Builds a Go program from the Go module proxy at a pinned release and caches
# the binary; prints its path.
#
#   gomod-build.sh MODULE VERSION BINARY CACHE_DIR [GO_MOD_DIRECTIVES]
#
# e.g. gomod-build.sh github.com/hashicorp/nomad-autoscaler v0.4.6 \
#        nomad-autoscaler ~/.cache/garrison/nomad-autoscaler-0.4.6
#
# `go install MODULE@VERSION` refuses a module whose go.mod has replace
# directives (Nomad's has), so the build goes through a throw-away wrapper
# module that requires the release: its build graph is the release's own
# go.mod/go.sum, plus GO_MOD_DIRECTIVES (the release's replaces, copied).
# `go get` raises the wrapper's go line to the release's, so the binary gets
# the release's GODEBUG defaults. CGO_ENABLED is honoured (Go's default
# otherwise). Skipped when CACHE_DIR/BINARY is already that release.
set -euo pipefail

if [ $# -lt 4 ] || [ $# -gt 5 ]; then
	echo "usage: $0 MODULE VERSION BINARY CACHE_DIR [GO_MOD_DIRECTIVES]" >&2
	exit 2
fi
module=$1 version=$2 name=$3 cache=$4 directives=${5:-}
bin=$cache/$name

# The build records the main package's module and version in the binary:
# a cached file that is not exactly this release is built again.
built() {
	[ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
		awk -v m="$module" -v v="$version" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'
}
if built; then
	echo "$bin"
	exit 0
fi

mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
cat >go.mod <<MOD
module garrison.local/${name//-/}build

go 1.21

require $module $version
$directives
MOD
start=$(date +%s)
echo "gomod-build: building $module $version into $bin (takes minutes)" >&2
# go mod tidy fails on a test-only import of Nomad's; go get resolves the
# build graph only.
GOFLAGS=-mod=mod go get "$module@$version" >&2
GOFLAGS=-mod=mod go build -trimpath -o "$work/$name" "$module" >&2
# Move into place atomically so a parallel run never sees half a binary.
mv "$work/$name" "$bin.tmp.$$"
mv "$bin.tmp.$$" "$bin"
echo "gomod-build: built in $(($(date +%s) - start))s" >&2
echo "$bin"
