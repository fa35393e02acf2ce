#!/usr/bin/env bash
# Builds Nomad from the Go module proxy (scripts/gomod-build.sh) and caches
# the binary; prints its path. `go install github.com/hashicorp/nomad@v1.9.3`
# is refused, so the wrapper module copies Nomad's replace directives and
# pins nomad/api to the commit of the release. Override the place with
# GARRISON_NOMAD_CACHE (a directory); the tests read GARRISON_NOMAD or look in
# the same place (internal/nomadtest).
set -euo pipefail

version=1.9.3
api_version=v0.0.0-20241111163541-d92bf1014886
cache=${GARRISON_NOMAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/garrison/nomad-$version}

CGO_ENABLED=${CGO_ENABLED:-1} exec "$(dirname "$0")/gomod-build.sh" github.com/hashicorp/nomad "v$version" nomad "$cache" "
replace (
	github.com/Microsoft/go-winio => github.com/endocrimes/go-winio v0.4.13-0.20190628114223-fb47a8b41948
	github.com/armon/go-metrics => github.com/armon/go-metrics v0.0.0-20230509193637-d9ca9af9f1f9
	github.com/hashicorp/hcl => github.com/hashicorp/hcl v1.0.1-0.20201016140508-a07e7d50bbee
	github.com/hashicorp/nomad/api => github.com/hashicorp/nomad/api $api_version
)"
