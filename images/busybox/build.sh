#!/bin/sh
# Builds garrison/busybox:latest (or the tag given) FROM scratch around the
# host's static busybox. The engine here has no bridge: build with host
# networking.
set -eu
tag=${1:-garrison/busybox:latest}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cp "$(dirname "$0")/Dockerfile" "$dir/"
cp /bin/busybox "$dir/busybox"
DOCKER_BUILDKIT=0 docker build --network host -t "$tag" "$dir"
