#!/usr/bin/env bash
# Builds HashiCorp's nomad-autoscaler from the Go module proxy
# (scripts/gomod-build.sh, as scripts/nomad-build.sh builds Nomad) and caches
# the binary, static (CGO_ENABLED=0); prints its path. Override the
# place with GARRISON_NOMAD_AUTOSCALER_CACHE (a directory); the benchmark
# reads GARRISON_NOMAD_AUTOSCALER (a binary) or runs this script.
set -euo pipefail

version=0.4.6
cache=${GARRISON_NOMAD_AUTOSCALER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/garrison/nomad-autoscaler-$version}

CGO_ENABLED=0 exec "$(dirname "$0")/../../scripts/gomod-build.sh" github.com/hashicorp/nomad-autoscaler "v$version" nomad-autoscaler "$cache"
